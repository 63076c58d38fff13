"""`clave config` show/get/set/unset, driven through the command functions cli.py calls."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest
import yaml

from clave import config
from clave.commands import config as command
from clave.errors import ConfigError, UsageError


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    monkeypatch.chdir(directory)
    for variable in config.ENV_VARS.values():
        monkeypatch.delenv(variable, raising=False)
    return directory


@pytest.fixture
def user_file(project) -> Path:
    return config.user_config_file()


def run(function, *args, **kwargs) -> str:
    out = io.StringIO()
    assert function(*args, out=out, **kwargs) == 0
    return out.getvalue()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def table(text: str) -> dict[str, list[str]]:
    """KEY -> [VALUE, SOURCE], read back from the aligned columns."""
    lines = text.splitlines()
    value_at, source_at = lines[0].index("VALUE"), lines[0].index("SOURCE")
    return {line[:value_at].strip(): [line[value_at:source_at].strip(), line[source_at:].strip()]
            for line in lines[1:]}


# --- show -----------------------------------------------------------------------------------


def test_show_lists_every_setting_with_its_value_and_source(project):
    (project / ".clave.json").write_text(json.dumps({"vm": {"cpus": 2}}))
    text = run(command.show, project_dir=project)
    assert text.splitlines()[0].split() == ["KEY", "VALUE", "SOURCE"]
    rows = table(text)
    assert list(rows) == list(config.DEFAULTS)
    assert rows["vm.cpus"] == ["2", ".clave.json"]
    assert rows["vm.memory"] == ["8192", "default"]
    assert rows["git.copy_files"] == ['[".env"]', "default"]
    assert rows["on_exit"] == ["null", "default"]
    assert rows["herd.enabled"] == ["true", "default"]


def test_show_names_the_user_file_and_the_variable_as_sources(project, user_file, monkeypatch):
    command.set_value("base_vm", "mine", out=io.StringIO())
    monkeypatch.setenv("CLAVE_SERVICES_MODE", "vm")
    rows = table(run(command.show, project_dir=project))
    assert rows["base_vm"] == ["mine", config.display_path(user_file)]
    assert rows["services.mode"] == ["vm", "env CLAVE_SERVICES_MODE"]


def test_show_masks_the_ssh_password_wherever_it_comes_from(project, monkeypatch):
    monkeypatch.setenv("CLAVE_SSH_PASSWORD", "hunter2-secret")
    text = run(command.show, project_dir=project)
    assert table(text)["ssh.password"] == ["*****", "env CLAVE_SSH_PASSWORD"]
    assert "hunter2-secret" not in text


def test_show_refuses_an_invalid_project_file(project):
    (project / ".clave.json").write_text('{"vm": {"cpus": "four"}}')
    with pytest.raises(ConfigError, match=r"^\.clave\.json: vm\.cpus: 'four' is not of type"):
        command.show(project_dir=project, out=io.StringIO())


# --- get ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "printed"), [
    ("base_image", "ghcr.io/cirruslabs/ubuntu:latest"),
    ("vm.cpus", "4"),
    ("vm.disk_size", "null"),
    ("herd.enabled", "true"),
    ("git.copy_files", '[".env"]'),
    ("provision.extra_steps", "[]"),
    ("tunnel", '{"port_min": 8081, "port_max": 8199}'),
])
def test_get_prints_the_merged_value_text_as_is_and_the_rest_as_json(project, key, printed):
    assert run(command.get, key, project_dir=project) == printed + "\n"


def test_get_prints_the_project_override(project):
    (project / ".clave.json").write_text('{"git": {"copy_files": [".env", "auth.json"]}}')
    assert json.loads(run(command.get, "git.copy_files", project_dir=project)) \
        == [".env", "auth.json"]


def test_get_of_an_unknown_key_suggests_the_close_one(project):
    with pytest.raises(UsageError, match=r"unknown setting 'vm\.memroy' \(did you mean "
                                         r"'vm\.memory'\?\)"):
        command.get("vm.memroy", project_dir=project, out=io.StringIO())


def test_get_of_a_far_off_key_has_no_suggestion(project):
    with pytest.raises(UsageError) as caught:
        command.get("flavour", project_dir=project, out=io.StringIO())
    assert "did you mean" not in caught.value.message and caught.value.exit_code == 2


# --- set / unset ----------------------------------------------------------------------------


def test_set_creates_a_private_directory_and_file_then_get_and_unset_round_trip(
        project, user_file):
    assert not user_file.parent.exists()
    assert run(command.set_value, "vm.cpus", "6") == \
        f"Set vm.cpus = 6 in {config.display_path(user_file)}.\n"
    assert mode(user_file.parent) == 0o700 and mode(user_file) == 0o600
    assert yaml.safe_load(user_file.read_text()) == {"vm": {"cpus": 6}}
    assert run(command.get, "vm.cpus", project_dir=project) == "6\n"
    assert config.load(project).source("vm.cpus") == config.display_path(user_file)

    where = config.display_path(user_file)
    assert run(command.unset, "vm.cpus") == f"Removed vm.cpus from {where}.\n"
    assert yaml.safe_load(user_file.read_text()) in (None, {})
    assert run(command.get, "vm.cpus", project_dir=project) == "4\n"
    assert mode(user_file) == 0o600


def test_set_keeps_the_other_keys(project, user_file):
    user_file.parent.mkdir(parents=True)
    user_file.write_text("vm:\n  memory: 4096\nbase_vm: mine\n")
    run(command.set_value, "vm.cpus", "2")
    run(command.set_value, "on_exit", "keep")
    assert yaml.safe_load(user_file.read_text()) == {
        "vm": {"memory": 4096, "cpus": 2}, "base_vm": "mine", "on_exit": "keep"}


def test_unset_keeps_the_other_keys_and_drops_an_emptied_section(project, user_file):
    run(command.set_value, "vm.cpus", "2")
    run(command.set_value, "ssh.user", "me")
    run(command.unset, "vm.cpus")
    assert yaml.safe_load(user_file.read_text()) == {"ssh": {"user": "me"}}


def test_set_makes_an_existing_readable_file_private(project, user_file):
    user_file.parent.mkdir(parents=True)
    user_file.write_text("base_vm: mine\n")
    user_file.chmod(0o644)
    run(command.set_value, "ssh.password", "s3cret")
    assert mode(user_file) == 0o600


def test_set_leaves_no_temporary_file_behind(project, user_file):
    run(command.set_value, "vm.cpus", "2")
    run(command.set_value, "vm.memory", "4096")
    assert [path.name for path in user_file.parent.iterdir()] == ["config.yaml"]


def test_set_does_not_echo_a_secret(project):
    assert "s3cret" not in run(command.set_value, "ssh.password", "s3cret")


@pytest.mark.parametrize(("key", "text", "stored"), [
    ("herd.enabled", "false", False),
    ("herd.enabled", "yes", True),
    ("vm.disk_size", "80", 80),
    ("vm.disk_size", "null", None),
    ("git.copy_files", ".env, auth.json", [".env", "auth.json"]),
    ("git.copy_files", '[".env", "storage/oauth.key"]', [".env", "storage/oauth.key"]),
    ("provision.extra_steps", "", []),
    ("provision.extra_steps", "services-vm", ["services-vm"]),
    ("services.mode", "gateway", "gateway"),
    ("auth_file", "~/secrets/clave.json", "~/secrets/clave.json"),
])
def test_set_parses_the_value_as_the_schema_type(project, key, text, stored):
    run(command.set_value, key, text)
    assert config.load(project).get(key) == stored


@pytest.mark.parametrize(("key", "text", "message"), [
    ("vm.cpus", "four", "vm.cpus: 'four' is not of type 'integer'"),
    ("vm.cpus", "0", "vm.cpus: 0 is less than the minimum of 1"),
    ("herd.enabled", "maybe", "herd.enabled: 'maybe' is not of type 'boolean'"),
    ("services.mode", "tunel", "services.mode: 'tunel' is not one of tunnel, gateway, vm "
                               "(did you mean 'tunnel'?)"),
    ("git.copy_files", '[".env", 2]', "git.copy_files[1]: 2 is not of type 'string'"),
    ("git.copy_files", "[.env", "git.copy_files: '[.env' is not a JSON list"),
    ("tunnel.port_min", "9000", "tunnel.port_min (9000, from "),
])
def test_set_refuses_an_invalid_value_and_creates_nothing(project, user_file, key, text, message):
    with pytest.raises(ConfigError) as caught:
        command.set_value(key, text, out=io.StringIO())
    assert caught.value.message.startswith(message) and caught.value.exit_code == 2
    assert not user_file.parent.exists()


def test_set_refuses_an_invalid_value_and_leaves_the_file_as_it_was(project, user_file):
    run(command.set_value, "vm.cpus", "2")
    before = user_file.read_bytes()
    with pytest.raises(ConfigError):
        command.set_value("vm.memory", "lots", out=io.StringIO())
    assert user_file.read_bytes() == before
    assert [path.name for path in user_file.parent.iterdir()] == ["config.yaml"]


def test_set_refuses_to_rewrite_a_malformed_user_file(project, user_file):
    user_file.parent.mkdir(parents=True)
    user_file.write_text("vm:\n  cpus: 2\n memory: 1\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: line 3: .*\(not valid YAML\)"):
        command.set_value("vm.cpus", "3", out=io.StringIO())
    assert user_file.read_text() == "vm:\n  cpus: 2\n memory: 1\n"


@pytest.mark.parametrize("function", [command.set_value, command.unset])
def test_set_and_unset_refuse_an_unknown_key_with_a_suggestion(project, user_file, function):
    args = ("vm.cpu", "2") if function is command.set_value else ("vm.cpu",)
    with pytest.raises(UsageError, match=r"did you mean 'vm\.cpus'\?"):
        function(*args, out=io.StringIO())
    assert not user_file.parent.exists()


def test_set_refuses_a_whole_section(project, user_file):
    with pytest.raises(UsageError, match="'vm' is a section, not a setting"):
        command.set_value("vm", "4", out=io.StringIO())


def test_unset_of_a_key_that_is_not_set_changes_nothing(project, user_file):
    text = run(command.unset, "vm.cpus")
    assert text == f"vm.cpus is not set in {config.display_path(user_file)}; nothing to do.\n"
    assert not user_file.parent.exists()
