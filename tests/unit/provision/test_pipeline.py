"""ProvisioningPipeline: fragments in order, headers checked, digests stable, scripts clean.

The real fragments are only parsed, linted and assembled here; they are executed in a Linux
test VM by tests/integration/test_fragments_in_vm.py. The synthetic fragments below (echo
into a log under tmp_path) are the only ones run on the host.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from clave.errors import ConfigError
from clave.provision import pipeline
from clave.provision.pipeline import (
    BUILTIN_DIR,
    OPTIONAL_DIR,
    PRELUDE,
    Fragment,
    ProvisioningPipeline,
    builtin_fragments,
    read_fragment,
    resolve_extra,
)

BUILTIN_KEYS = ["10-base-packages", "20-php", "25-php-fpm-pool", "30-composer", "40-nginx",
                "50-nodejs", "60-claude-code", "70-project-dir"]
ALL_FRAGMENTS = sorted(BUILTIN_DIR.glob("*.sh")) + sorted(OPTIONAL_DIR.glob("*.sh"))


@pytest.fixture(autouse=True)
def builtin_fragments_only(monkeypatch):
    """These tests are about the shipped fragments, whatever the caller's environment says."""
    monkeypatch.delenv("CLAVE_PROVISION_DIR", raising=False)


def write(directory: Path, file_name: str, body: str = "true\n", *, name: str | None = None,
          description: str = "a test step") -> Path:
    """A fragment file whose header name defaults to the file's NN-name."""
    directory.mkdir(parents=True, exist_ok=True)
    if name is None:
        name = Path(file_name).stem.split("-", 1)[-1]
    path = directory / file_name
    path.write_text(f"# name: {name}\n# description: {description}\n{body}")
    return path


def bash(script: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=30)


# -- order and headers ---------------------------------------------------------------------

def test_builtin_fragments_are_the_image_steps_in_number_order():
    assert [f.key for f in builtin_fragments()] == BUILTIN_KEYS
    assert [f.key for f in ProvisioningPipeline.load().fragments] == BUILTIN_KEYS


def test_fragments_are_ordered_by_number_prefix_then_by_name(tmp_path):
    for file_name in ("20-zeta.sh", "10-omega.sh", "20-alpha.sh", "05-first.sh"):
        write(tmp_path, file_name)
    loaded = builtin_fragments(tmp_path)
    shuffled = ProvisioningPipeline(list(reversed(loaded)))
    expected = ["05-first", "10-omega", "20-alpha", "20-zeta"]
    assert [f.key for f in loaded] == expected
    assert [f.key for f in shuffled.fragments] == expected


def test_the_header_gives_name_description_and_order(tmp_path):
    path = write(tmp_path, "42-redis-tools.sh", "apt-get install -y redis-tools\n",
                 description="  redis-cli for debugging  ")
    fragment = read_fragment(path)
    assert (fragment.order, fragment.name, fragment.key) == ("42", "redis-tools", "42-redis-tools")
    assert fragment.description == "redis-cli for debugging"
    assert fragment.body == path.read_text()
    assert fragment.path == path


def test_every_builtin_fragment_has_a_description_naming_what_it_installs():
    descriptions = {f.name: f.description for f in builtin_fragments()}
    assert "PHP 8.4" in descriptions["php"] and "ondrej" in descriptions["php"]
    assert "Node.js 22" in descriptions["nodejs"]
    assert "nofail" in descriptions["project-dir"]
    assert all(len(d) > 10 for d in descriptions.values())


@pytest.mark.parametrize("text", [
    "apt-get update\n",                                            # no header at all
    "# name: foo\napt-get update\n",                               # description missing
    "# description: only this\n# more comment\n",                  # name missing
    "#!/bin/bash\n# name: foo\n# description: on lines 2-3\n",     # header not on lines 1-2
    "# name: foo\n# name: foo\n",                                  # name twice
], ids=["none", "no-description", "no-name", "late-header", "name-twice"])
def test_a_fragment_without_the_two_line_header_is_refused_naming_the_file(tmp_path, text):
    path = tmp_path / "30-foo.sh"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        read_fragment(path)
    assert str(path) in str(refused.value)
    assert "# name:" in str(refused.value) and "# description:" in str(refused.value)


@pytest.mark.parametrize("file_name", ["5-foo.sh", "100-foo.sh", "20_foo.sh", "20-Foo.sh",
                                       "20-foo bar.sh", "foo.sh", "20-.sh"])
def test_a_badly_named_fragment_file_is_refused_not_skipped(tmp_path, file_name):
    write(tmp_path, "10-good.sh")
    write(tmp_path, file_name, name="foo")
    with pytest.raises(ConfigError) as refused:
        builtin_fragments(tmp_path)
    assert file_name in str(refused.value)
    assert "NN-name.sh" in str(refused.value)


def test_files_that_are_not_shell_fragments_are_ignored(tmp_path):
    write(tmp_path, "10-good.sh")
    (tmp_path / "README.md").write_text("not a fragment")
    (tmp_path / "__init__.py").write_text("")
    assert [f.key for f in builtin_fragments(tmp_path)] == ["10-good"]


def test_a_header_name_that_differs_from_the_file_name_is_refused(tmp_path):
    path = write(tmp_path, "20-php.sh", name="php84")
    with pytest.raises(ConfigError, match=r"name: php84.*'php'"):
        read_fragment(path)


@pytest.mark.parametrize("name", ["My Step", "step;rm -rf /", "../escape", "UPPER", "-dash"])
def test_an_extra_step_name_that_cannot_name_a_file_or_task_is_refused(tmp_path, name):
    path = write(tmp_path, "mine.sh", name=name)
    with pytest.raises(ConfigError, match="lowercase letters, digits and dashes"):
        read_fragment(path, order="85")


def test_an_unreadable_fragment_is_a_config_error_not_a_traceback(tmp_path):
    path = tmp_path / "10-latin1.sh"
    path.write_bytes(b"# name: latin1\n# description: caf\xe9\n")
    with pytest.raises(ConfigError, match="cannot read"):
        read_fragment(path)
    with pytest.raises(ConfigError, match="cannot read"):
        read_fragment(tmp_path / "missing.sh", order="85")


# -- digests -------------------------------------------------------------------------------

def test_digests_are_the_sha256_of_each_fragment_and_stable_across_loads():
    first, second = ProvisioningPipeline.load(), ProvisioningPipeline.load()
    assert first.digests() == second.digests()
    assert first.checksum == second.checksum
    for fragment in first.fragments:
        assert fragment.digest == hashlib.sha256(fragment.path.read_bytes()).hexdigest()
    assert len(set(first.digests().values())) == len(BUILTIN_KEYS)


def test_editing_one_fragment_changes_only_its_digest_and_the_checksum(tmp_path):
    copy = tmp_path / "provision"
    shutil.copytree(BUILTIN_DIR, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    before = ProvisioningPipeline(builtin_fragments(copy))
    php = copy / "20-php.sh"
    php.write_text(php.read_text() + "apt-get install -y -q php8.4-imagick\n")
    after = ProvisioningPipeline(builtin_fragments(copy))
    changed = {k for k in before.digests() if before.digests()[k] != after.digests()[k]}
    assert changed == {"20-php"}
    assert before.checksum != after.checksum
    assert before.checksum == ProvisioningPipeline.load().checksum   # the copy is faithful


def test_adding_or_renumbering_a_step_changes_the_checksum(tmp_path):
    write(tmp_path, "10-one.sh", "echo one\n")
    base = ProvisioningPipeline(builtin_fragments(tmp_path)).checksum
    write(tmp_path, "20-two.sh", "echo two\n")
    added = ProvisioningPipeline(builtin_fragments(tmp_path)).checksum
    (tmp_path / "20-two.sh").rename(tmp_path / "30-two.sh")
    renumbered = ProvisioningPipeline(builtin_fragments(tmp_path)).checksum
    assert len({base, added, renumbered}) == 3


# -- lint: every fragment alone and the assembled script ------------------------------------

def lint(script: str) -> None:
    syntax = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    check = subprocess.run(["shellcheck", "-s", "bash", "-f", "gcc", "-"], input=script,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("path", ALL_FRAGMENTS, ids=lambda p: p.name)
def test_each_fragment_script_passes_bash_n_and_shellcheck(path):
    order = None if path.parent == BUILTIN_DIR else "80"
    lint(read_fragment(path, order=order).script())


def test_the_assembled_script_passes_bash_n_and_shellcheck_with_the_optional_steps():
    lint(ProvisioningPipeline.load().to_script())
    lint(ProvisioningPipeline.load(services_vm=True).to_script())


def test_the_linter_check_itself_catches_a_bad_script():
    with pytest.raises(AssertionError):
        lint(PRELUDE + "rm -rf $dir/*\n")          # SC2115/SC2086: unquoted expansion
    with pytest.raises(AssertionError):
        lint(PRELUDE + "if true; then\n")          # syntax error


def test_a_fragment_script_is_strict_bash_with_its_body_unchanged():
    fragment = read_fragment(BUILTIN_DIR / "20-php.sh")
    script = fragment.script()
    assert script.startswith("#!/usr/bin/env bash\nset -euo pipefail\n")
    assert "export DEBIAN_FRONTEND=noninteractive\n" in script
    assert script.endswith(fragment.body)


# -- extra steps ---------------------------------------------------------------------------

def test_services_vm_switches_on_the_optional_builtin_after_the_image_steps():
    loaded = ProvisioningPipeline.load(services_vm=True)
    assert [f.key for f in loaded.fragments] == [*BUILTIN_KEYS, "80-services-vm"]
    assert loaded.checksum != ProvisioningPipeline.load().checksum


def test_services_vm_named_and_switched_on_is_applied_once():
    loaded = ProvisioningPipeline.load(["services-vm"], services_vm=True)
    assert [f.key for f in loaded.fragments].count("80-services-vm") == 1


def test_a_project_fragment_is_read_from_the_project_and_runs_last(tmp_path):
    write(tmp_path / "provision", "imagick.sh", "apt-get install -y -q php8.4-imagick\n",
          name="imagick", description="ImageMagick for PHP")
    loaded = ProvisioningPipeline.load(["provision/imagick.sh"], tmp_path, services_vm=True)
    assert [f.key for f in loaded.fragments][-2:] == ["80-services-vm", "85-imagick"]
    assert loaded.fragments[-1].path == tmp_path / "provision" / "imagick.sh"
    assert loaded.fragments[-1].description == "ImageMagick for PHP"


def test_an_unknown_extra_step_is_refused_naming_the_known_optional_ones(tmp_path):
    with pytest.raises(ConfigError) as refused:
        resolve_extra(["redis-vm"], tmp_path)
    message = str(refused.value)
    assert "'redis-vm'" in message and "services-vm" in message
    assert "provision.extra_steps" in message


def test_a_project_fragment_without_a_header_is_refused(tmp_path):
    (tmp_path / "setup.sh").write_text("apt-get install -y jq\n")
    with pytest.raises(ConfigError, match="setup.sh"):
        ProvisioningPipeline.load(["setup.sh"], tmp_path)


def test_two_steps_with_the_same_key_are_refused(tmp_path):
    write(tmp_path, "a.sh", name="tools")
    write(tmp_path, "b.sh", name="tools")
    with pytest.raises(ConfigError, match="85-tools"):
        ProvisioningPipeline.load(["a.sh", "b.sh"], tmp_path)
    php = read_fragment(BUILTIN_DIR / "20-php.sh")
    with pytest.raises(ConfigError, match="20-php"):
        ProvisioningPipeline([php, php])


# -- the assembled script and the image record ---------------------------------------------

def test_the_script_holds_every_fragment_in_order_then_the_record_command():
    loaded = ProvisioningPipeline.load(services_vm=True)
    script = loaded.to_script()
    assert script.startswith(PRELUDE)
    positions = [script.index(f.body.rstrip()) for f in loaded.fragments]
    assert positions == sorted(positions)
    for fragment in loaded.fragments:
        assert f"echo {shlex.quote(f'==> {fragment.key}: {fragment.description}')}\n(\n" in script
    assert script.endswith(loaded.record_command())
    assert loaded.checksum in script.splitlines()[3]


def test_the_record_command_writes_valid_json_with_the_checksum_and_digests(tmp_path,
                                                                          monkeypatch):
    record = tmp_path / "etc" / "clave" / "image.json"
    monkeypatch.setattr(pipeline, "IMAGE_RECORD", str(record))
    loaded = ProvisioningPipeline.load(services_vm=True)
    done = bash(loaded.record_command(), tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(record.read_text())
    assert data == {"checksum": loaded.checksum, "steps": loaded.digests()}


def synthetic(tmp_path: Path, bodies: dict[str, str]) -> ProvisioningPipeline:
    steps = tmp_path / "steps"
    return ProvisioningPipeline([read_fragment(write(steps, name, body)) for name, body
                                 in bodies.items()])


def test_the_script_runs_each_step_in_its_own_subshell_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "IMAGE_RECORD", str(tmp_path / "image.json"))
    log = tmp_path / "log"
    loaded = synthetic(tmp_path, {
        "10-one.sh": f'echo one >> "{log}"\ncd /\ntrap \'echo one-cleanup >> "{log}"\' EXIT\n',
        "20-two.sh": f'echo "two in $PWD" >> "{log}"\nexit 0\n',
        "30-three.sh": f'echo three >> "{log}"\n',
    })
    done = bash(loaded.to_script(), tmp_path)
    assert done.returncode == 0, done.stderr
    # step one's cd and EXIT trap stay in its subshell; step two's `exit 0` ends only step two
    assert log.read_text().splitlines() == ["one", "one-cleanup", f"two in {tmp_path}", "three"]
    assert "==> 20-two: a test step" in done.stdout
    assert json.loads((tmp_path / "image.json").read_text())["checksum"] == loaded.checksum


def test_a_failing_step_stops_the_script_before_the_next_step_and_the_record(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setattr(pipeline, "IMAGE_RECORD", str(tmp_path / "image.json"))
    log = tmp_path / "log"
    loaded = synthetic(tmp_path, {
        "10-one.sh": f'echo one >> "{log}"\n',
        "20-two.sh": f'false | cat\necho two >> "{log}"\n',      # pipefail makes this fail
        "30-three.sh": f'echo three >> "{log}"\n',
    })
    done = bash(loaded.to_script(), tmp_path)
    assert done.returncode != 0
    assert log.read_text().splitlines() == ["one"]
    assert not (tmp_path / "image.json").exists()


def test_a_fragment_script_alone_stops_at_an_unset_variable(tmp_path):
    fragment = read_fragment(write(tmp_path, "10-strict.sh",
                                   f'echo "$UNDEFINED_THING" > "{tmp_path}/out"\n'))
    done = bash(fragment.script(), tmp_path)
    assert done.returncode != 0 and "UNDEFINED_THING" in done.stderr
    assert not (tmp_path / "out").exists()


def test_fragments_are_frozen_values():
    fragment = read_fragment(BUILTIN_DIR / "10-base-packages.sh")
    with pytest.raises(AttributeError):
        fragment.name = "other"  # type: ignore[misc]
    assert isinstance(fragment, Fragment)
