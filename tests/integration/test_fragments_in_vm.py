"""The real provisioning fragments, run as root in a Linux test VM against stand-ins.

The fragments need Ubuntu's, ondrej's, NodeSource's, Composer's and Anthropic's servers,
none reachable here. So the programs that would reach them (apt-get, add-apt-repository,
curl) and php 8.4 are replaced, inside the VM only, by the stand-ins in standins/: they
record what they were asked and change the VM's files as the real ones would (a fake
~admin/.local/bin/claude, /usr/local/bin/composer, node, apt sources). These tests check
the fragments' control flow and idempotency; no real package is installed or downloaded,
as every test name says. /usr, /etc and /var are the VM's own overlays: nothing here writes
to the host's, and `inside_a_test_vm` refuses to run a fragment anywhere else.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from clave.provision.pipeline import BUILTIN_DIR, ProvisioningPipeline, read_fragment
from tests.harness.fakevm import GUEST_PATH

STANDINS = Path(__file__).resolve().parent / "standins"
STANDIN_DIR = "/usr/local/clave-standins"
LOG = "/var/log/clave-standins/calls.jsonl"
STATE = "/var/lib/clave-standins"
FSTAB_LINE = "project /srv/project virtiofs rw,nofail 0 0"
PHP_EXTENSIONS = ("curl", "mbstring", "xml", "mysql", "redis", "sqlite3", "bcmath", "gd",
                  "intl")


class Guest:
    """A test VM made to look like a fresh Ubuntu image whose downloads are stand-ins."""

    def __init__(self, vm):
        self.vm = vm

    def sh(self, command: str, user: str = "root", check: bool = True):
        done = self.vm.exec(["bash", "-c", command], user=user)
        if check:
            assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
        return done

    def write(self, path: str, text: str, mode: str = "644") -> None:
        done = self.vm.exec(["bash", "-c", 'mkdir -p "${1%/*}" && cat > "$1" && chmod "$2" "$1"',
                             "_", path, mode], input=text)
        assert done.returncode == 0, done.stderr

    def read(self, path: str) -> str:
        return self.sh(f"cat {shlex.quote(path)}").stdout

    def exists(self, path: str) -> bool:
        return self.sh(f"test -e {shlex.quote(path)}", check=False).returncode == 0

    def owner(self, path: str) -> str:
        return self.sh(f"stat -c %U:%G {shlex.quote(path)}").stdout.strip()

    def inside_a_test_vm(self) -> None:
        """Fragments run only where /usr and /etc are this VM's overlays, never the host's."""
        for tree in ("/usr", "/etc", "/var"):
            kind = self.sh(f"findmnt -n -o FSTYPE --target {tree}").stdout.strip()
            assert kind == "overlay", f"{tree} is {kind!r}, not the VM's overlay: refusing"

    def prepare(self) -> None:
        self.inside_a_test_vm()
        for path in sorted(STANDINS.iterdir()):
            if path.is_file():
                self.write(f"{STANDIN_DIR}/{path.name}", path.read_text(), "755")
        # sudo resets PATH to secure_path: the installers run through sudo must see the
        # stand-ins too (this sudoers file is in the VM's /etc overlay)
        self.write("/etc/sudoers.d/zz-clave-standins",
                   f'Defaults secure_path="{STANDIN_DIR}:{GUEST_PATH}"\n', "440")
        # a fresh Ubuntu image has no composer or node: hide the host's (VM overlay only)
        self.sh(f"install -d -m 1777 {LOG.rsplit('/', 1)[0]} {STATE} {STATE}/fail"
                f" && install -m 666 /dev/null {LOG}"
                " && rm -f /usr/bin/composer /usr/bin/node /usr/bin/nodejs")

    def fail_next(self, host: str, times: int) -> None:
        self.write(f"{STATE}/fail/{host}", str(times), "666")

    def run(self, script: str, name: str = "fragment"):
        """Run a script as root the way provisioning does (`sudo bash FILE` from admin's
        home), with the stand-ins first on PATH."""
        self.inside_a_test_vm()
        path = f"/var/tmp/clave-provision/{name}.sh"
        self.write(path, script)
        return self.vm.exec(["env", "-C", "/home/admin", f"PATH={STANDIN_DIR}:{GUEST_PATH}",
                             "bash", path], timeout=120)

    def calls(self, prog: str | None = None) -> list[dict]:
        entries = [json.loads(line) for line in self.read(LOG).splitlines()]
        return [e for e in entries if prog is None or e["prog"] == prog]

    def argvs(self, prog: str) -> list[list[str]]:
        return [e["argv"] for e in self.calls(prog)]

    def forget_calls(self) -> None:
        self.sh(f": > {LOG}")


@pytest.fixture
def guest(test_vm, monkeypatch) -> Guest:
    """A fresh test VM (tests/harness) with the stand-ins installed; the built-in fragments."""
    monkeypatch.delenv("CLAVE_PROVISION_DIR", raising=False)
    prepared = Guest(test_vm)
    prepared.prepare()
    return prepared


def fragment(key: str):
    return read_fragment(BUILTIN_DIR / f"{key}.sh")


def ok(done) -> None:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


def installs(guest: Guest) -> list[list[str]]:
    """The package lists of every `apt-get install`, options dropped."""
    return [[a for a in argv[1:] if not a.startswith("-")]
            for argv in guest.argvs("apt-get") if argv[:1] == ["install"]]


# -- the stand-ins themselves ----------------------------------------------------------------

def test_the_stand_ins_shadow_the_real_programs_for_root_and_for_sudo_to_admin(guest):
    for program in ("apt-get", "add-apt-repository", "curl", "php"):
        done = guest.vm.exec(["env", f"PATH={STANDIN_DIR}:{GUEST_PATH}", "bash", "-c",
                              f"command -v {program}"])
        assert done.stdout.strip() == f"{STANDIN_DIR}/{program}"
    via_sudo = guest.sh("sudo -H -u admin bash -c 'command -v curl; echo $HOME; id -un'")
    assert via_sudo.stdout.split() == [f"{STANDIN_DIR}/curl", "/home/admin", "admin"]
    unknown = guest.sh(f"{STANDIN_DIR}/curl -fsSL https://example.com/x", check=False)
    assert unknown.returncode == 6 and "Could not resolve host" in unknown.stderr
    assert not guest.exists("/usr/bin/composer") and not guest.exists("/usr/bin/node")


# -- one fragment at a time ------------------------------------------------------------------

def test_base_packages_fragment_asks_apt_for_its_tools_non_interactively__real_packages_not_installed(guest):  # noqa: E501
    ok(guest.run(fragment("10-base-packages").script()))
    argvs = guest.argvs("apt-get")
    assert argvs[0][0] == "update"
    assert "-y" in argvs[1] and "--no-install-recommends" in argvs[1]
    assert {"curl", "git", "unzip", "software-properties-common", "ca-certificates"} <= \
        set(installs(guest)[0])


def test_php_fragment_adds_the_ondrej_ppa_then_installs_php84_and_its_extensions__real_packages_not_installed(guest):  # noqa: E501
    ok(guest.run(fragment("20-php").script()))
    calls = [(c["prog"], c["argv"]) for c in guest.calls()]
    assert calls[0] == ("add-apt-repository", ["-y", "ppa:ondrej/php"])
    assert calls[1] == ("apt-get", ["update", "-q"])
    assert calls[2][0] == "apt-get" and calls[2][1][:2] == ["install", "-y"]
    packages = installs(guest)[0]
    assert {f"php8.4-{ext}" for ext in PHP_EXTENSIONS} <= set(packages)
    assert {"php8.4-cli", "php8.4-fpm"} <= set(packages)
    assert all(p.startswith("php8.4-") for p in packages)
    assert "ppa.launchpadcontent.net/ondrej/php" in \
        guest.read("/etc/apt/sources.list.d/ondrej-ubuntu-php-noble.sources")


def test_php_fragment_run_twice_adds_the_ppa_only_once__real_packages_not_installed(guest):
    ok(guest.run(fragment("20-php").script()))
    guest.forget_calls()
    ok(guest.run(fragment("20-php").script()))
    assert guest.argvs("add-apt-repository") == []
    assert [argv[0] for argv in guest.argvs("apt-get")] == ["install"]   # no second update


def test_php_fragment_without_the_ppa_would_find_no_php84__stand_in_apt_is_faithful(guest):
    done = guest.run("set -e\napt-get install -y -q php8.4-cli\n")
    assert done.returncode == 100 and "Unable to locate package php8.4-cli" in done.stderr


def test_php_fpm_pool_fragment_runs_the_pool_as_admin_on_the_php84_socket(guest):
    ok(guest.run(fragment("25-php-fpm-pool").script()))
    pool = guest.read("/etc/php/8.4/fpm/pool.d/www.conf")
    for line in ("user = admin", "group = admin", "listen = /run/php/php8.4-fpm.sock",
                 "listen.owner = www-data"):
        assert line in pool.splitlines()
    assert guest.calls() == []
    ok(guest.run(fragment("25-php-fpm-pool").script()))
    assert guest.read("/etc/php/8.4/fpm/pool.d/www.conf") == pool


def test_composer_fragment_checks_the_installer_signature_and_installs_composer__real_composer_not_downloaded(guest):  # noqa: E501
    ok(guest.run(fragment("30-composer").script()))
    curls = guest.argvs("curl")
    assert curls[0][-1] == "https://composer.github.io/installer.sig"
    assert curls[1][1] == "https://getcomposer.org/installer"
    setup = curls[1][curls[1].index("-o") + 1]
    phps = guest.argvs("php")
    assert phps[0] == ["-r", f"echo hash_file('sha384', '{setup}');"]
    assert phps[1] == [setup, "--quiet", "--install-dir=/usr/local/bin", "--filename=composer"]
    assert "Composer version 2" in guest.sh("/usr/local/bin/composer --version").stdout
    assert guest.owner("/home/admin/.cache") == "admin:admin"
    assert guest.owner("/home/admin/.cache/composer") == "admin:admin"
    assert not guest.exists(setup.rsplit("/", 1)[0])         # its temporary directory is gone
    guest.forget_calls()
    ok(guest.run(fragment("30-composer").script()))
    assert guest.calls() == []                               # installed: nothing asked again


def test_composer_fragment_refuses_an_installer_whose_signature_does_not_match__nothing_installed(guest):  # noqa: E501
    guest.write(f"{STATE}/composer-sig-mismatch", "")
    done = guest.run(fragment("30-composer").script())
    assert done.returncode != 0
    assert "composer installer signature mismatch" in done.stderr
    hashed, = guest.argvs("php")                             # hashed, never run
    assert not guest.exists("/usr/local/bin/composer")
    setup = hashed[1].split("'")[3]
    assert setup.endswith("/composer-setup.php") and not guest.exists(setup.rsplit("/", 1)[0])


def test_nginx_fragment_serves_the_project_public_dir_with_a_config_nginx_accepts__real_package_not_installed(guest):  # noqa: E501
    ok(guest.run(fragment("40-nginx").script()))
    assert installs(guest) == [["nginx"]]
    site = guest.read("/etc/nginx/sites-enabled/clave")
    assert "root /srv/project/public;" in site
    assert "fastcgi_pass unix:/run/php/php8.4-fpm.sock;" in site
    assert not guest.exists("/etc/nginx/sites-enabled/default")
    checked = guest.sh("nginx -t", check=False)              # the VM's real nginx parses it
    assert checked.returncode == 0, checked.stderr


def test_nodejs_fragment_installs_node_22_from_nodesource__real_packages_not_installed(guest):
    ok(guest.run(fragment("50-nodejs").script()))
    assert guest.argvs("curl") == [["-fsSL", "https://deb.nodesource.com/setup_22.x", "-o",
                                    "/tmp/nodesource_setup.sh"]]
    assert [c["user"] for c in guest.calls("setup_22.x")] == ["root"]
    assert installs(guest) == [["nodejs"]]
    assert guest.sh("node --version").stdout.strip().startswith("v22.")
    assert not guest.exists("/tmp/nodesource_setup.sh")
    guest.forget_calls()
    ok(guest.run(fragment("50-nodejs").script()))
    assert guest.calls() == []                               # node 22 present: nothing asked


def test_nodejs_fragment_replaces_a_node_that_is_not_22__real_packages_not_installed(guest):
    guest.write("/usr/bin/node", "#!/bin/sh\necho v18.19.1\n", "755")
    ok(guest.run(fragment("50-nodejs").script()))
    assert installs(guest) == [["nodejs"]]
    assert guest.sh("node --version").stdout.strip().startswith("v22.")


def test_claude_code_fragment_runs_the_native_installer_as_admin__real_claude_not_downloaded(guest):  # noqa: E501
    ok(guest.run(fragment("60-claude-code").script()))
    curl, = guest.calls("curl")
    assert curl["argv"] == ["-fsSL", "https://claude.ai/install.sh"]
    assert (curl["user"], curl["home"]) == ("admin", "/home/admin")
    install, = guest.calls("install.sh")
    assert (install["user"], install["home"]) == ("admin", "/home/admin")
    assert guest.owner("/home/admin/.local/bin/claude") == "admin:admin"
    version = guest.sh("/home/admin/.local/bin/claude --version", user="admin").stdout
    assert "(Claude Code)" in version
    assert guest.read("/etc/clave/claude-version") == version.split()[0] + "\n"
    assert not guest.exists("/root/.local/bin/claude")
    guest.forget_calls()
    ok(guest.run(fragment("60-claude-code").script()))
    assert guest.calls() == []                               # installed: no second download


def test_claude_code_fragment_retries_a_failed_download__real_claude_not_downloaded(guest):
    guest.fail_next("claude.ai", 2)
    ok(guest.run(fragment("60-claude-code").script()))
    assert len(guest.calls("curl")) == 3
    assert guest.argvs("sleep") == [["5"], ["5"]]
    assert guest.exists("/home/admin/.local/bin/claude")


def test_claude_code_fragment_fails_after_three_failed_downloads__real_claude_not_downloaded(guest):  # noqa: E501
    guest.fail_next("claude.ai", 3)
    done = guest.run(fragment("60-claude-code").script())
    assert done.returncode != 0
    assert "failed 3 times" in done.stderr
    assert len(guest.calls("curl")) == 3 and guest.calls("install.sh") == []
    assert not guest.exists("/home/admin/.local/bin/claude")


def test_claude_code_fragment_puts_local_bin_on_admins_login_path_once(guest):
    guest.sh("rm -f /home/admin/.profile")
    ok(guest.run(fragment("60-claude-code").script()))
    ok(guest.run(fragment("60-claude-code").script()))
    profile = guest.read("/home/admin/.profile")
    assert profile == 'export PATH="$HOME/.local/bin:$PATH"\n'
    assert guest.owner("/home/admin/.profile") == "admin:admin"
    login = guest.sh("bash -lc 'command -v claude'", user="admin")
    assert login.stdout.strip() == "/home/admin/.local/bin/claude"


def test_project_dir_fragment_writes_the_virtiofs_fstab_line_with_nofail_once(guest):
    ok(guest.run(fragment("70-project-dir").script()))
    ok(guest.run(fragment("70-project-dir").script()))
    lines = [line for line in guest.read("/etc/fstab").splitlines() if "/srv/project" in line]
    assert lines == [FSTAB_LINE]
    assert guest.owner("/srv/project") == "admin:admin"
    assert guest.owner("/var/lib/clave/vendor") == "admin:admin"
    # the line is the one Tart's share needs: `mount /srv/project` mounts the `project` tag
    guest.sh("mount /srv/project && mountpoint -q /srv/project")
    assert guest.exists("/srv/project/marker.txt")


# -- the whole image script ------------------------------------------------------------------

def test_the_assembled_script_runs_every_step_in_order_and_records_the_image__real_packages_not_installed(guest):  # noqa: E501
    pipeline = ProvisioningPipeline.load()
    done = guest.run(pipeline.to_script(), "provision")
    ok(done)
    banners = [line.split(":")[0] for line in done.stdout.splitlines()
               if line.startswith("==> ")]
    assert banners == [f"==> {f.key}" for f in pipeline.fragments]
    record = json.loads(guest.read("/etc/clave/image.json"))
    assert record == {"checksum": pipeline.checksum, "steps": pipeline.digests()}
    firsts = [c["prog"] for c in guest.calls()]
    order = [firsts.index(p) for p in ("add-apt-repository", "php", "setup_22.x", "install.sh")]
    assert order == sorted(order)
    assert guest.exists("/usr/local/bin/composer")
    assert guest.exists("/home/admin/.local/bin/claude")
    assert guest.sh("node --version").stdout.startswith("v22.")
    assert guest.read("/etc/fstab").count("/srv/project") == 1


def test_the_assembled_script_run_again_downloads_and_adds_nothing__real_packages_not_installed(guest):  # noqa: E501
    script = ProvisioningPipeline.load().to_script()
    ok(guest.run(script, "provision"))
    guest.forget_calls()
    ok(guest.run(script, "provision"))
    progs = {c["prog"] for c in guest.calls()}
    assert progs == {"apt-get"}                       # no PPA, curl, php, installer, sleep
    assert all(argv[0] == "install" or argv[0] == "update" for argv in guest.argvs("apt-get"))
    assert ["update", "-q"] in guest.argvs("apt-get")         # only 10-base-packages' own
    assert len([a for a in guest.argvs("apt-get") if a[0] == "update"]) == 1
    assert guest.read("/etc/fstab").count("/srv/project") == 1


def test_a_failing_step_stops_the_assembled_script_before_the_image_is_recorded(guest):
    guest.fail_next("deb.nodesource.com", 1)
    done = guest.run(ProvisioningPipeline.load().to_script(), "provision")
    assert done.returncode != 0
    assert "==> 50-nodejs" in done.stdout and "==> 60-claude-code" not in done.stdout
    assert guest.calls("install.sh") == []
    assert not guest.exists("/etc/clave/image.json")


# -- the optional step ------------------------------------------------------------------------

def test_services_vm_fragment_creates_the_laravel_database_in_the_vms_real_mariadb__packages_not_installed(guest):  # noqa: E501
    script = read_fragment(BUILTIN_DIR / "optional" / "services-vm.sh", order="80").script()
    ok(guest.run(script, "services-vm"))
    ok(guest.run(script, "services-vm"))                     # idempotent: IF NOT EXISTS
    assert installs(guest) == [["mariadb-server", "redis-server"]] * 2
    login = guest.sh("mysql -ularavel -plaravel -h localhost laravel -e 'SELECT 1 AS ok'")
    assert "ok" in login.stdout
