"""Layered settings: defaults < user config.yaml < project .clave.json < CLAVE_* env."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clave import config
from clave.context import OnExit, ServicesMode
from clave.errors import EXIT_USAGE, ConfigError, UsageError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project directory that is also the current directory (so errors say `.clave.json`)."""
    directory = tmp_path / "project"
    directory.mkdir()
    monkeypatch.chdir(directory)
    return directory


@pytest.fixture
def user_file() -> Path:
    path = config.user_config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_project(project: Path, data) -> None:
    (project / ".clave.json").write_text(data if isinstance(data, str) else json.dumps(data))


def refusal(project: Path, environ=None) -> str:
    with pytest.raises(ConfigError) as caught:
        config.load(project, environ=environ or {})
    assert caught.value.exit_code == EXIT_USAGE
    return caught.value.message


# --- defaults and schemas -------------------------------------------------------------------


def test_defaults_are_the_documented_values_and_say_they_are_defaults():
    settings = config.defaults()
    assert settings.get("base_image") == "ghcr.io/cirruslabs/ubuntu:latest"
    assert settings.get("vm") == {"cpus": 4, "memory": 8192, "disk_size": None}
    assert settings.get("ssh") == {"user": "admin", "port": 22, "password": "admin",
                                   "connect_timeout": 5}
    assert settings.get("services") == {"mode": "tunnel", "mysql_port": 3306, "redis_port": 6379}
    assert settings.get("tunnel.port_min") == 8081 and settings.get("tunnel.port_max") == 8199
    assert settings.get("git.copy_files") == [".env"]
    assert settings.get("bootstrap") == {"required": False, "composer": True, "migrate": True}
    assert settings.get("provision.extra_steps") == []
    assert settings.get("on_exit") is None
    assert settings.get("herd.enabled") is True
    assert settings.get("auth_file") == "~/.config/clave/auth.json"
    assert {source for _, _, source in settings.items()} == {"default"}


def test_the_user_schema_describes_exactly_the_default_keys():
    assert set(config._leaf_schemas()) == set(config.DEFAULTS)


@pytest.mark.parametrize("name", ["definitions", "user", "project"])
def test_every_schema_is_valid_draft_2020_12(name):
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(config._schema(name))


def test_the_defaults_pass_the_user_schema():
    config.check_value("vm.cpus", 4)
    assert config.Settings.from_dict(config.defaults().as_dict()) == config.Settings(
        values=config.DEFAULTS, sources=dict.fromkeys(config.DEFAULTS, "given"))


def test_the_schema_choices_match_the_enums_the_code_uses():
    leaves = config._leaf_schemas()
    assert leaves["services.mode"]["enum"] == [mode.value for mode in ServicesMode]
    assert leaves["on_exit"]["enum"] == [*OnExit.values(), None]


def test_the_project_schema_has_every_key_but_auth_file():
    user, project = (set(config._schema(name)["properties"]) for name in ("user", "project"))
    assert user - project == {"auth_file"}


# --- Settings -------------------------------------------------------------------------------


def test_get_of_an_unknown_key_raises_key_error():
    with pytest.raises(KeyError):
        config.defaults().get("vm.cpu")


def test_changing_a_returned_list_does_not_change_the_settings():
    settings = config.defaults()
    settings.get("git.copy_files").append("secrets.txt")
    settings.as_dict()["git"]["copy_files"].append("secrets.txt")
    assert settings.get("git.copy_files") == [".env"]


def test_as_dict_is_nested_and_items_are_flat_rows_in_display_order():
    settings = config.defaults()
    assert settings.as_dict()["vm"]["memory"] == 8192
    assert [row[0] for row in settings.items()] == list(config.DEFAULTS)
    assert ("ssh.port", 22, "default") in settings.items()


def test_from_dict_accepts_nested_and_dotted_keys_and_fills_defaults():
    settings = config.Settings.from_dict({"vm": {"cpus": 2}, "services.mode": "vm"})
    assert settings.get("vm") == {"cpus": 2, "memory": 8192, "disk_size": None}
    assert settings.get("services.mode") == "vm"
    assert settings.source("vm.cpus") == "given" and settings.source("vm.memory") == "default"


def test_from_dict_validates():
    with pytest.raises(ConfigError, match="vm.cpus: 'two' is not of type 'integer'"):
        config.Settings.from_dict({"vm.cpus": "two"})


# --- layering -------------------------------------------------------------------------------


def test_each_layer_overrides_the_one_before_and_source_names_it(project, user_file):
    user_file.write_text("vm:\n  cpus: 2\n  memory: 4096\nssh:\n  user: me\nbase_vm: mine\n")
    write_project(project, {"vm": {"cpus": 3, "memory": 6144}, "ssh": {"user": "dev"}})
    settings = config.load(project, environ={"CLAVE_VM_CPUS": "6"})

    user = config.display_path(user_file)
    assert (settings.get("vm.cpus"), settings.source("vm.cpus")) == (6, "env CLAVE_VM_CPUS")
    assert (settings.get("vm.memory"), settings.source("vm.memory")) == (6144, ".clave.json")
    assert (settings.get("ssh.user"), settings.source("ssh.user")) == ("dev", ".clave.json")
    assert (settings.get("base_vm"), settings.source("base_vm")) == ("mine", user)
    assert (settings.get("ssh.port"), settings.source("ssh.port")) == (22, "default")


def test_a_section_merges_key_by_key_across_layers(project, user_file):
    user_file.write_text("vm:\n  memory: 4096\n")
    write_project(project, {"vm": {"cpus": 2}})
    assert config.load(project, environ={}).get("vm") == {"cpus": 2, "memory": 4096,
                                                           "disk_size": None}


def test_no_files_and_no_variables_give_the_defaults(project):
    assert config.load(project, environ={}) == config.defaults()


def test_load_defaults_to_the_current_directory_and_the_process_environment(
        project, monkeypatch):
    write_project(project, {"base_vm": "from-project"})
    monkeypatch.setenv("CLAVE_VM_MEMORY", "2048")
    settings = config.load()
    assert settings.get("base_vm") == "from-project" and settings.get("vm.memory") == 2048


def test_the_user_file_is_found_under_xdg_config_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.user_config_file() == tmp_path / "xdg" / "clave" / "config.yaml"


def test_the_user_file_is_shown_under_the_home_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert config.display_path(config.user_config_file()) == "~/.config/clave/config.yaml"


def test_an_empty_user_file_means_no_settings(project, user_file):
    user_file.write_text("")
    assert config.load(project, environ={}) == config.defaults()


def test_a_comment_only_user_file_means_no_settings(project, user_file):
    user_file.write_text("# vm:\n#   cpus: 2\n")
    assert config.load(project, environ={}) == config.defaults()


def test_a_yaml_float_with_no_fraction_becomes_an_integer(project, user_file):
    user_file.write_text("vm:\n  cpus: 4.0\n")
    value = config.load(project, environ={}).get("vm.cpus")
    assert value == 4 and isinstance(value, int)


def test_auth_file_may_come_from_the_user_file_and_the_environment(project, user_file):
    user_file.write_text("auth_file: /secure/auth.json\n")
    assert config.load(project, environ={}).get("auth_file") == "/secure/auth.json"
    from_env = config.load(project, environ={"CLAVE_AUTH_FILE": "/other/auth.json"})
    assert from_env.source("auth_file") == "env CLAVE_AUTH_FILE"


# --- environment variables ------------------------------------------------------------------


@pytest.mark.parametrize(("variable", "text", "path", "value"), [
    ("CLAVE_VM_CPUS", "8", "vm.cpus", 8),
    ("CLAVE_VM_MEMORY", " 16384 ", "vm.memory", 16384),
    ("CLAVE_VM_DISK_SIZE", "80", "vm.disk_size", 80),
    ("CLAVE_VM_DISK_SIZE", "null", "vm.disk_size", None),
    ("CLAVE_SSH_PORT", "2222", "ssh.port", 2222),
    ("CLAVE_SSH_PASSWORD", " spaced ", "ssh.password", " spaced "),
    ("CLAVE_SSH_CONNECT_TIMEOUT", "10", "ssh.connect_timeout", 10),
    ("CLAVE_SERVICES_MODE", "gateway", "services.mode", "gateway"),
    ("CLAVE_MYSQL_PORT", "3307", "services.mysql_port", 3307),
    ("CLAVE_REDIS_PORT", "6380", "services.redis_port", 6380),
    ("CLAVE_HERD_ENABLED", "false", "herd.enabled", False),
    ("CLAVE_HERD_ENABLED", "0", "herd.enabled", False),
    ("CLAVE_HERD_ENABLED", "Yes", "herd.enabled", True),
    ("CLAVE_HERD_ENABLED", "on", "herd.enabled", True),
    ("CLAVE_ON_EXIT", "merge", "on_exit", "merge"),
    ("CLAVE_BASE_IMAGE", "ghcr.io/me/img:1", "base_image", "ghcr.io/me/img:1"),
    ("CLAVE_BASE_VM", "other-base", "base_vm", "other-base"),
    ("CLAVE_SSH_USER", "ubuntu", "ssh.user", "ubuntu"),
])
def test_an_environment_variable_is_coerced_to_the_schema_type(
        project, variable, text, path, value):
    settings = config.load(project, environ={variable: text})
    assert settings.get(path) == value
    assert type(settings.get(path)) is type(value)
    assert settings.source(path) == f"env {variable}"


def test_an_empty_environment_variable_counts_as_unset(project):
    settings = config.load(project, environ={"CLAVE_VM_CPUS": "", "CLAVE_ON_EXIT": " "})
    assert settings.source("vm.cpus") == "default" and settings.get("on_exit") is None


@pytest.mark.parametrize(("environ", "message"), [
    ({"CLAVE_VM_CPUS": "four"}, "CLAVE_VM_CPUS: 'four' is not of type 'integer'"),
    ({"CLAVE_VM_CPUS": "0"}, "CLAVE_VM_CPUS: 0 is less than the minimum of 1"),
    ({"CLAVE_SSH_PORT": "70000"}, "CLAVE_SSH_PORT: 70000 is greater than the maximum of 65535"),
    ({"CLAVE_HERD_ENABLED": "maybe"}, "CLAVE_HERD_ENABLED: 'maybe' is not of type 'boolean'"),
    ({"CLAVE_SERVICES_MODE": "tunel"},
     "CLAVE_SERVICES_MODE: 'tunel' is not one of tunnel, gateway, vm (did you mean 'tunnel'?)"),
    ({"CLAVE_ON_EXIT": "later"},
     "CLAVE_ON_EXIT: 'later' is not one of keep, merge, discard, null"),
])
def test_a_bad_environment_value_is_refused_naming_the_variable(project, environ, message):
    assert refusal(project, environ) == message


def test_unrelated_clave_variables_are_ignored(project):
    assert config.load(project, environ={"CLAVE_HOME": "/x", "CLAVE_PLAIN": "1"}) \
        == config.defaults()


# --- the project file: every error path -----------------------------------------------------


def test_a_wrong_type_in_the_project_file_names_file_key_and_expectation(project):
    write_project(project, {"vm": {"cpus": "four"}})
    assert refusal(project) == ".clave.json: vm.cpus: 'four' is not of type 'integer'"


def test_a_wrong_type_inside_a_list_names_the_item(project):
    write_project(project, {"git": {"copy_files": [".env", 7]}})
    assert refusal(project) == ".clave.json: git.copy_files[1]: 7 is not of type 'string'"


def test_an_enum_violation_lists_the_choices(project):
    write_project(project, {"services": {"mode": "bridge"}})
    assert refusal(project) == \
        ".clave.json: services.mode: 'bridge' is not one of tunnel, gateway, vm"


def test_an_unknown_key_close_to_a_real_one_gets_a_did_you_mean(project):
    write_project(project, {"vm": {"cpu": 2}})
    assert refusal(project) == ".clave.json: unknown key 'vm.cpu' (did you mean 'vm.cpus'?)"


def test_an_unknown_top_level_key_can_suggest_a_nested_one(project):
    write_project(project, {"memory": 2048})
    assert refusal(project) == ".clave.json: unknown key 'memory' (did you mean 'vm.memory'?)"


def test_an_unknown_key_far_from_every_real_one_has_no_suggestion(project):
    write_project(project, {"colour": "blue"})
    assert refusal(project) == ".clave.json: unknown key 'colour'"


def test_an_unknown_key_is_reported_before_other_errors(project):
    write_project(project, {"vm": {"cpus": "four"}, "sshh": {}})
    assert refusal(project) == ".clave.json: unknown key 'sshh' (did you mean 'ssh'?)"


def test_a_dotted_key_is_told_to_be_nested(project):
    write_project(project, {"vm.cpus": 2})
    assert refusal(project) == ".clave.json: key 'vm.cpus' must be nested: 'cpus' inside 'vm'"


def test_auth_file_is_refused_in_the_project_file(project):
    write_project(project, {"auth_file": "/tmp/steal.json"})
    message = refusal(project)
    assert message.startswith(".clave.json: 'auth_file' can only be set in ")
    assert message.endswith("or CLAVE_AUTH_FILE, not in a project file")


def test_malformed_json_names_the_file_and_line(project):
    write_project(project, '{\n  "vm": {"cpus": 2,}\n}\n')
    assert refusal(project).startswith(".clave.json: line 2, column 20: ")
    assert refusal(project).endswith("(not valid JSON).")


def test_an_empty_project_file_is_malformed_json(project):
    write_project(project, "")
    assert refusal(project).startswith(".clave.json: line 1, column 1: Expecting value")


@pytest.mark.parametrize(("text", "kind"), [("[1, 2]", "a list"), ('"vm"', "a string"),
                                            ("4", "a number"), ("null", "null")])
def test_a_project_file_that_is_not_an_object_is_refused(project, text, kind):
    write_project(project, text)
    message = refusal(project)
    assert message.startswith(".clave.json: the top level must be a mapping of settings")
    assert message.endswith(f"not {kind}.")


def test_an_unreadable_project_file_is_refused(project):
    (project / ".clave.json").mkdir()
    assert refusal(project).startswith(".clave.json: cannot be read (")


def test_a_project_file_elsewhere_is_named_by_its_path(tmp_path, project):
    other = tmp_path / "other"
    other.mkdir()
    write_project(other, {"vm": {"cpus": True}})
    assert refusal(other) == f"{other / '.clave.json'}: vm.cpus: True is not of type 'integer'"


# --- the user file: every error path --------------------------------------------------------


def test_a_wrong_type_in_the_user_file_names_the_user_file(project, user_file):
    user_file.write_text("herd:\n  enabled: sometimes\n")
    assert refusal(project) == \
        f"{config.display_path(user_file)}: herd.enabled: 'sometimes' is not of type 'boolean'"


def test_an_unknown_key_in_the_user_file_gets_a_did_you_mean(project, user_file):
    user_file.write_text("bootstrap:\n  migrations: false\n")
    assert refusal(project).endswith(
        "config.yaml: unknown key 'bootstrap.migrations' (did you mean 'bootstrap.migrate'?)")


def test_malformed_yaml_names_the_file_and_line(project, user_file):
    user_file.write_text("vm:\n  cpus: 2\n memory: 4096\n")
    message = refusal(project)
    assert message.startswith(f"{config.display_path(user_file)}: line 3: ")
    assert message.endswith("(not valid YAML).")


def test_a_user_file_that_is_a_list_is_refused(project, user_file):
    user_file.write_text("- vm\n- cpus\n")
    assert "config.yaml: the top level must be a mapping of settings" in refusal(project)


def test_a_user_file_error_wins_over_a_valid_project_file(project, user_file):
    user_file.write_text("vm: 4\n")
    write_project(project, {"vm": {"cpus": 2}})
    assert refusal(project).endswith("config.yaml: vm: 4 is not of type 'object'")


# --- across layers --------------------------------------------------------------------------


def test_a_tunnel_port_range_upside_down_is_refused_naming_both_sources(project, user_file):
    user_file.write_text("tunnel:\n  port_max: 9000\n")
    write_project(project, {"tunnel": {"port_min": 9100}})
    message = refusal(project)
    assert message.startswith("tunnel.port_min (9100, from .clave.json) is above tunnel.port_max "
                              f"(9000, from {config.display_path(user_file)})")


def test_a_refused_load_creates_nothing(project, clave_home):
    write_project(project, {"vm": {"cpus": "four"}})
    refusal(project)
    assert not config.user_config_file().parent.exists()
    assert list(clave_home.iterdir()) == []
    assert [p.name for p in project.iterdir()] == [".clave.json"]


def test_config_error_is_a_usage_error_with_exit_code_2():
    assert issubclass(ConfigError, UsageError) and ConfigError.exit_code == 2


# --- cheap loading --------------------------------------------------------------------------


def test_loading_without_files_or_variables_imports_neither_jsonschema_nor_yaml(tmp_path):
    code = ("import sys; from clave import config; config.load(); "
            "print(sorted({'jsonschema', 'yaml'} & set(sys.modules)))")
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLAVE_")}
    env.update(PYTHONPATH=str(ROOT), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_importing_config_imports_neither_jsonschema_nor_yaml():
    code = "import sys, clave.config; print(sorted({'jsonschema', 'yaml'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]"
