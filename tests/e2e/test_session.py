"""`clave`, end to end: a real session on a pty, in Linux test VMs, from preflight to teardown.

Only tart, herd and claude are stand-ins (tests/fakes); git, SQLite, doit, sshd, nginx,
php-fpm, MariaDB and Redis are real. See tests/e2e/session_world.py for the world.
Run with `python -m pytest -p tests.harness.fixtures tests/e2e` (as root: the VMs are
Linux namespaces).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.session_world import (
    ENV_COMMENT,
    INSTALLER_STATE,
    TOKEN,
    World,
    secret_in_argv,
    wait_for,
)
from tests.harness.plugin import require_plugin

require_plugin()

from tests.harness import leaks  # noqa: E402  (after the skip: it needs the plugin's env)
from tests.harness.fakevm import OWNER_ENV  # noqa: E402

PATCHED_KEYS = {"APP_URL", "DB_HOST", "DB_PORT", "REDIS_HOST", "REDIS_PORT"}
MIGRATION = "2024_01_01_000000_create_clave_fixture_items_table"
EXIT_INTERRUPTED = 130
CLAUDE_VERSION = "2.1.0"
WORK = """\
echo "a feature" >feature.txt
git add feature.txt
git commit -q -m "Add a feature"
echo "not committed yet" >draft.txt
"""


@pytest.fixture
def make_world(tmp_path, host_services, bridge):
    """World.create(...) for this test; afterwards nothing of it may be left anywhere."""
    owner = os.environ[OWNER_ENV]
    baseline = set(leaks.check(owner))
    worlds: list[World] = []

    def make(**kwargs) -> World:
        world = World.create(tmp_path / f"world{len(worlds) + 1}", host_services, **kwargs)
        worlds.append(world)
        return world

    yield make
    left = []
    for world in worlds:
        world.close()
        left += world.leftovers()
    left += leaks.wait_clean(owner, baseline)
    for world in worlds:
        _force_clean(world)
    if left:
        pytest.fail("the session left behind:\n  " + "\n  ".join(left), pytrace=False)


@pytest.fixture
def world(make_world) -> World:
    return make_world()


# -- the app, its services and its URL --------------------------------------------------------

@pytest.mark.parametrize("mode", ["tunnel", "gateway"])
def test_the_app_answers_through_the_tunnel_with_the_host_database_and_redis(
        make_world, host_services, bridge, mode):
    world = make_world(mode=mode)
    host_services.reset_database()
    world.script("pause\n")
    session = world.start("--on-exit", "keep")
    vm = world.wait_paused()[0]
    row = _row(world)
    port, site = row["tunnel_port"], f"{row['proxy_name']}.test"

    page = _get(f"http://127.0.0.1:{port}/")
    db_host = "127.0.0.1" if mode == "tunnel" else bridge.gateway
    assert page["hostname"] == vm
    assert page["db"] == {"host": db_host, "port": host_services.mysql_port,
                          "database": "clave", "ok": True, "version": page["db"]["version"]}
    assert page["redis"]["host"] == db_host and page["redis"]["ok"] is True
    assert page["redis"]["port"] == host_services.redis_port
    assert MIGRATION in host_services.sql("SELECT migration FROM clave.clave_migrations_ran")
    assert world.herd_proxies() == {site: {"target": f"http://127.0.0.1:{port}", "secure": True}}
    assert ["proxy", row["proxy_name"], f"http://127.0.0.1:{port}", "--secure"] \
        in world.herd_calls()

    clone_env = (Path(row["clone_path"]) / ".env").read_text()
    assert _env_values(clone_env) == {
        "APP_URL": f"https://{site}", "DB_HOST": db_host,
        "DB_PORT": str(host_services.mysql_port), "REDIS_HOST": db_host,
        "REDIS_PORT": str(host_services.redis_port)}
    assert _without_patched(clone_env) == _without_patched(world.env_text)
    assert (world.project / ".env").read_text() == world.env_text

    world.resume(vm)
    assert session.wait() == 0
    assert world.herd_proxies() == {}
    assert ["unproxy", row["proxy_name"]] in world.herd_calls()
    assert world.vms() == [] and world.session_rows() == []


# -- Claude Code in the VM --------------------------------------------------------------------

def test_claude_runs_in_the_project_as_admin_with_only_the_token_and_no_secret_in_argv(world):
    world.vm_environment({"ANTHROPIC_API_KEY": "sk-ant-api03-stray-key-in-the-vm",
                          "ANTHROPIC_BASE_URL": "https://gateway.invalid"})
    world.script("pause\nexit 7\n")
    session = world.start("--on-exit", "keep",
                          env={"ANTHROPIC_AUTH_TOKEN": "host-gateway-token",
                               "CLAUDE_CODE_USE_BEDROCK": "1"})
    vm = world.wait_paused()[0]

    record = world.record(vm)
    assert record["argv"] == ["--dangerously-skip-permissions"]
    assert (record["cwd"], record["user"]) == ("/srv/project", "admin")
    assert record["auth_env"] == ["CLAUDE_CODE_OAUTH_TOKEN"]
    assert record["credential_sha256"] == {
        "CLAUDE_CODE_OAUTH_TOKEN": hashlib.sha256(TOKEN.encode()).hexdigest()}
    assert record["tty"] == {"stdin": True, "stdout": True, "stderr": True}
    assert record["term"] == "xterm-256color" and record["size"] == [40, 132]
    seeded = record["claude_json"]
    assert seeded["userID"] == INSTALLER_STATE["userID"]   # the installer's keys are kept
    assert seeded["hasCompletedOnboarding"] is True
    assert seeded["bypassPermissionsModeAccepted"] is True
    assert seeded["lastOnboardingVersion"] == CLAUDE_VERSION
    assert seeded["projects"]["/srv/project"]["hasTrustDialogAccepted"] is True
    assert record["settings_json"]["skipDangerousModePermissionPrompt"] is True
    assert record["settings_json"]["permissions"]["defaultMode"] == "bypassPermissions"

    assert secret_in_argv(TOKEN) == []       # the host's processes, the VM's among them
    guest = world.guest(vm)
    inside = guest.exec(["python3", "-c", _SCAN_ARGV], input=TOKEN)
    assert (inside.returncode, inside.stdout) == (0, ""), inside.stderr
    handed_over = guest.exec(["ls", "-A", "/home/admin/.clave"])
    assert handed_over.stdout.split() == []  # the credential file is gone once read

    world.resume(vm)
    assert session.wait() == 7               # Claude's exit status is the session's
    assert world.vms() == []


_SCAN_ARGV = """
import os, sys
secret = sys.stdin.read().encode()
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if secret in open(f"/proc/{pid}/cmdline", "rb").read():
            print(pid)
    except OSError:
        pass
"""


# -- what happens to the code ----------------------------------------------------------------

def test_keep_leaves_the_clone_with_its_uncommitted_file_and_its_branch_in_the_repo(world):
    world.script(WORK)
    head = world.git("rev-parse", "HEAD")
    session = world.start("--on-exit", "keep")
    assert session.wait() == 0
    row_branch = _branch(world)
    clone = world.project / ".clave" / "wt" / row_branch.removeprefix("clave/")

    assert world.git("rev-parse", "HEAD") == head and world.git("status", "--porcelain") == ""
    assert world.git("show", f"{row_branch}:feature.txt") == "a feature"
    assert (clone / "draft.txt").read_text() == "not committed yet\n"
    assert world.git("status", "--porcelain", cwd=clone) == "?? draft.txt"
    assert world.git("rev-parse", "HEAD", cwd=clone) == world.git("rev-parse", row_branch)


def test_merge_chosen_at_the_prompt_brings_every_change_into_the_base_branch(world):
    world.script(WORK)
    session = world.start()
    session.expect(r"What should happen to this session's code\?")
    session.send("2\r")                      # the menu's second entry: Merge
    assert session.wait() == 0
    assert "? What should happen to this session's code? Merge" in session.text
    assert re.search(r"clave/s-[a-z0-9]{8}: 1 commit, 1 file changed, 1 insertion\(\+\), "
                     r"1 uncommitted path\.", session.text)
    assert "Merging into main would not conflict." in session.text

    assert world.git("rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert world.git("status", "--porcelain") == ""
    assert (world.project / "feature.txt").read_text() == "a feature\n"
    assert (world.project / "draft.txt").read_text() == "not committed yet\n"
    assert world.git("log", "-1", "--format=%s").startswith("Merge clave session s-")
    assert world.git("branch", "--list", "clave/*") == "" and world.clones() == []


def test_discard_removes_the_clone_but_a_backup_ref_keeps_all_of_its_work(world):
    world.script(WORK)
    head = world.git("rev-parse", "HEAD")
    session = world.start("--on-exit", "discard")
    assert session.wait() == 0

    backup = world.git("for-each-ref", "--format=%(refname)", "refs/clave/backup/")
    assert re.fullmatch(r"refs/clave/backup/s-[a-z0-9]{8}", backup)
    assert world.git("show", f"{backup}:feature.txt") == "a feature"
    assert world.git("show", f"{backup}:draft.txt") == "not committed yet"
    assert world.git("rev-parse", "HEAD") == head and world.git("status", "--porcelain") == ""
    assert world.git("branch", "--list", "clave/*") == "" and world.clones() == []
    assert "undo with `git branch clave/s-" in session.text


# -- interruptions ------------------------------------------------------------------------------

def test_ctrl_c_while_the_vm_boots_tears_everything_down(make_world):
    world = make_world(latency="run=60")       # the VM takes a minute to get an address
    session = world.start("--on-exit", "discard")
    session.expect(r"waiting for an IP address")
    wait_for(lambda: world.vms() != [] and _tart_running(world), 30, "the VM to run",
             [session])
    session.ctrl_c()
    assert session.wait() == EXIT_INTERRUPTED
    assert "interrupted: tearing the session down." in session.text
    assert any(call["argv"][:1] == ["delete"] for call in world.tart_calls())
    assert world.clones() == []


def test_ctrl_c_during_the_bootstrap_tears_everything_down(world, host_services):
    host_services.sql("CREATE TABLE IF NOT EXISTS clave.clave_migrations_ran "
                      "(migration VARCHAR(255) PRIMARY KEY, ran_at VARCHAR(32) NOT NULL)")
    with _table_locked(host_services, "clave_migrations_ran"):   # migrate waits for it
        session = world.start("--on-exit", "discard")
        session.expect(r"php artisan migrate")
        session.ctrl_c()
        assert session.wait() == EXIT_INTERRUPTED
    assert "interrupted: tearing the session down." in session.text
    assert not re.search(r"Session [a-z0-9]{8}: ", session.text)   # Claude never started


def test_sigterm_while_claude_runs_tears_everything_down_and_keeps_the_work(world):
    world.script(WORK + "pause\n")
    session = world.start("--on-exit", "keep")
    world.wait_paused()
    session.signal(signal.SIGTERM)
    assert session.wait() == EXIT_INTERRUPTED
    assert "interrupted: tearing the session down." in session.text
    branch = _branch(world)
    assert world.git("show", f"{branch}:feature.txt") == "a feature"
    clone = world.project / ".clave" / "wt" / branch.removeprefix("clave/")
    assert (clone / "draft.txt").read_text() == "not committed yet\n"


def test_closing_the_terminal_while_claude_runs_tears_everything_down_and_keeps_the_work(world):
    world.script(WORK + "pause\n")
    session = world.start()                    # no --on-exit: nobody is left to ask
    world.wait_paused()
    session.hang_up()
    session.wait()
    branch = _branch(world)
    assert world.git("show", f"{branch}:feature.txt") == "a feature"
    clone = world.project / ".clave" / "wt" / branch.removeprefix("clave/")
    assert (clone / "draft.txt").read_text() == "not committed yet\n"


# -- several sessions ----------------------------------------------------------------------------

def test_three_sessions_at_once_get_their_own_vm_port_proxy_and_branch(world):
    world.script("pause\n")
    sessions = [world.start("--on-exit", "discard") for _ in range(3)]
    vms = world.wait_paused(3, timeout=180)
    rows = world.session_rows()

    assert len(rows) == 3
    for key in ("vm_name", "tunnel_port", "proxy_name", "clone_branch", "vm_ip"):
        assert len({row[key] for row in rows}) == 3, key
    assert sorted(row["vm_name"] for row in rows) == vms
    proxies = world.herd_proxies()
    assert {p["target"] for p in proxies.values()} == {
        f"http://127.0.0.1:{row['tunnel_port']}" for row in rows}
    for row in rows:
        assert _get(f"http://127.0.0.1:{row['tunnel_port']}/")["hostname"] == row["vm_name"]

    for vm in vms:
        world.resume(vm)
    assert [session.wait(180) for session in sessions] == [0, 0, 0]
    assert len(world.git("for-each-ref", "refs/clave/backup/").splitlines()) == 3


# -- helpers -------------------------------------------------------------------------------------

def _row(world: World) -> dict:
    rows = world.session_rows()
    assert len(rows) == 1, rows
    return rows[0]


def _branch(world: World) -> str:
    branches = world.git("for-each-ref", "--format=%(refname:short)", "refs/heads/clave/")
    assert len(branches.split()) == 1, branches
    return branches


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=15) as response:
        return json.loads(response.read())


def _env_values(text: str) -> dict[str, str]:
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key: values[key] for key in PATCHED_KEYS if key in values}


def _without_patched(text: str) -> list[str]:
    """Every line, in order, with the values of the keys clave owns blanked out."""
    assert text.startswith(ENV_COMMENT)
    return [line.split("=", 1)[0] + "=…" if line.split("=", 1)[0] in PATCHED_KEYS else line
            for line in text.splitlines()]


def _tart_running(world: World) -> bool:
    return any(call["argv"][:1] == ["run"] for call in world.tart_calls())


class _table_locked:
    """Another client holds a write lock on a table until the block ends."""

    def __init__(self, services, table: str):
        self.services, self.table = services, table

    def __enter__(self):
        self.proc = subprocess.Popen(
            ["mariadb", f"--socket={self.services.socket}", "-uroot", "--unbuffered",
             "--batch", "--skip-column-names", "clave", "-e",
             f"LOCK TABLES {self.table} WRITE; SELECT 'locked'; DO SLEEP(300);"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert "locked" in self.proc.stdout.readline()
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.communicate(timeout=10)


def _force_clean(world: World) -> None:
    """After a failure: remove what a session left, so the next test starts clean."""
    from tests.harness.fakevm import FakeVm
    from tests.harness.network import Network

    for record in Network.from_env().slots().values():
        if str(record.get("state_dir", "")).startswith(str(world.tart_home)):
            FakeVm(record).destroy()
    for row in world.session_rows():
        if row.get("tunnel_pid"):
            with contextlib.suppress(OSError):
                os.kill(row["tunnel_pid"], signal.SIGKILL)
