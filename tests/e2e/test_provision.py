"""`clave provision [--update|--force|--image]` end to end, and dodo.py's CI tasks.

The real CLI in a subprocess; the fake tart on PATH boots Linux test VMs (CLAVE_FAKEVM=1);
clave reaches them over real SSH. The machinery runs the tiny fragment set in
provision_fragments/ (the built-in fragments need Ubuntu's repositories). See conftest.py.

Run with `python -m pytest -p tests.harness.fixtures tests/e2e/test_provision.py`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from clave.provision.pipeline import ProvisioningPipeline, builtin_fragments
from tests.e2e.conftest import BASE, BUILD, ROOT, ProvisionWorld
from tests.harness.plugin import require_plugin

IMAGE = "ghcr.io/cirruslabs/ubuntu:latest"
STEPS = ["alpha", "bravo", "charlie"]

require_plugin()

pytestmark = pytest.mark.vm


def pipeline(world: ProvisionWorld) -> ProvisioningPipeline:
    return ProvisioningPipeline(builtin_fragments(world.fragments))


def host_state(world: ProvisionWorld) -> dict:
    return json.loads((world.home / "provision-state.json").read_text())


def table(text: str, graph: str) -> dict[str, str]:
    """`clave tasks` rows of one graph: task name -> STATUS cell."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{graph} ("))
    header, rows = lines[start + 1], []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        rows.append(line)
    column = header.index("STATUS")
    return {row.split()[0]: row[column:].strip() for row in rows}


# --- building and updating ----------------------------------------------------------------

def test_first_provision_runs_every_step_and_swaps_the_shut_down_build_vm_in(provision_world):
    world = provision_world
    done = world.provision()

    assert "Built 'clave-base': ran 10-alpha, 20-bravo, 30-charlie." in done.stdout
    assert world.vms() == [BASE]
    [boot] = world.boots()
    assert world.ran_in(boot) == STEPS
    assert (boot / "clave-test" / "bravo").read_text() == "bravo v1\n"
    expected = pipeline(world)
    assert world.image_record(boot) == {"checksum": expected.checksum,
                                        "steps": expected.digests()}
    state = host_state(world)
    assert (state["checksum"], state["steps"], state["image"]) == (
        expected.checksum, expected.digests(), IMAGE)
    assert world.calls_for("clone") == [["clone", IMAGE, BUILD]]
    assert [argv[1] for argv in world.calls_for("run")] == [BUILD]
    assert world.calls_for("stop") == []          # the guest shut itself down
    assert ["rename", BUILD, BASE] in world.calls_for("rename")
    assert "guest has stopped the virtual machine" in (world.home / "provision.log").read_text()


def test_update_right_after_a_build_boots_nothing_and_says_nothing_is_stale(provision_built):
    world = provision_built
    done = world.provision("--update")

    assert "The base VM 'clave-base' is up to date: all 3 steps match. Nothing to do." \
        in done.stdout
    assert set(world.verbs()) == {"get"}          # no clone, set, run, rename or delete
    assert len(world.boots()) == 1
    assert world.vms() == [BASE]


def test_provision_without_flags_on_a_built_base_points_at_update_and_boots_nothing(
        provision_seeded):
    world = provision_seeded
    done = world.provision()

    assert "already built" in done.stdout and "--update" in done.stdout
    assert set(world.verbs()) == {"get"}
    assert world.boots() == []


def test_changing_one_fragment_reruns_that_step_only_in_one_boot_of_the_base(provision_seeded):
    world = provision_seeded
    world.edit("20-bravo", "bravo v1", "bravo v2")
    done = world.provision("--update")

    assert "ran 20-bravo; up to date: 10-alpha, 30-charlie." in done.stdout
    [boot] = world.boots()
    assert world.ran_in(boot) == ["bravo"]
    assert (boot / "clave-test" / "bravo").read_text() == "bravo v2\n"
    assert world.calls_for("clone") == [["clone", BASE, BUILD]]
    assert len(world.calls_for("run")) == 1
    assert world.image_record(boot)["steps"] == pipeline(world).digests()
    assert host_state(world)["steps"]["20-bravo"] == pipeline(world).digests()["20-bravo"]
    assert world.vms() == [BASE]
    assert world.calls_for("stop") == []


def test_force_reruns_every_step_from_the_oci_image(provision_seeded):
    world = provision_seeded
    done = world.provision("--force")

    assert "ran 10-alpha, 20-bravo, 30-charlie." in done.stdout
    [boot] = world.boots()
    assert world.ran_in(boot) == STEPS
    assert world.calls_for("clone") == [["clone", IMAGE, BUILD]]
    assert world.vms() == [BASE]


def test_image_rebuilds_every_step_from_the_image_it_names(provision_seeded):
    world = provision_seeded
    other = "ghcr.io/cirruslabs/ubuntu:22.04"
    world.provision("--image", other)

    [boot] = world.boots()
    assert world.ran_in(boot) == STEPS
    assert world.calls_for("clone") == [["clone", other, BUILD]]
    assert host_state(world)["image"] == other


def test_update_after_the_base_image_setting_changes_rebuilds_everything_from_the_new_image(
        provision_seeded, monkeypatch):
    world = provision_seeded
    other = "ghcr.io/cirruslabs/ubuntu:22.04"
    monkeypatch.setenv("CLAVE_BASE_IMAGE", other)
    done = world.provision("--update")

    assert "ran 10-alpha, 20-bravo, 30-charlie." in done.stdout
    assert world.calls_for("clone") == [["clone", other, BUILD]]
    assert host_state(world)["image"] == other
    assert world.vms() == [BASE]


def pulled_base(world: ProvisionWorld, monkeypatch) -> None:
    """A base made elsewhere (`tart clone <ref> clave-base`): its image records the steps it
    was built with; this Mac has no record of its own."""
    world.fake.create_vm(BASE)
    record = world.home.parent / "pulled-image.json"
    expected = pipeline(world)
    record.write_text(json.dumps({"checksum": expected.checksum, "steps": expected.digests()}))
    monkeypatch.setenv("CLAVE_TEST_BASE_RECORD", str(record))


def test_a_pulled_base_with_every_step_is_adopted_in_one_boot_and_nothing_runs(
        provision_world, monkeypatch):
    world = provision_world
    pulled_base(world, monkeypatch)
    done = world.provision("--update")

    assert "already has all 3 steps (its own record says so)" in done.stdout
    [boot] = world.boots()
    assert world.ran_in(boot) == []
    assert world.calls_for("rename") == []                 # unchanged: nothing swapped in
    assert world.vms() == [BASE]
    assert host_state(world)["steps"] == pipeline(world).digests()
    world.fake.clear_calls()
    again = world.provision("--update")                    # now known here: no boot at all
    assert "Nothing to do." in again.stdout and set(world.verbs()) == {"get"}


def test_a_pulled_base_runs_only_the_steps_that_changed_since_it_was_built(
        provision_world, monkeypatch):
    world = provision_world
    pulled_base(world, monkeypatch)
    world.edit("20-bravo", "bravo v1", "bravo v2")
    done = world.provision("--update")

    assert "ran 20-bravo; up to date: 10-alpha, 30-charlie." in done.stdout
    [boot] = world.boots()
    assert world.ran_in(boot) == ["bravo"]
    assert ["rename", BUILD, BASE] in world.calls_for("rename")
    assert host_state(world)["steps"] == pipeline(world).digests()


# --- failure and interruption ----------------------------------------------------------------

def test_a_missing_fragment_directory_is_refused_before_anything_is_created(provision_world,
                                                                            monkeypatch):
    monkeypatch.setenv("CLAVE_PROVISION_DIR", str(provision_world.fragments / "missing"))
    done = provision_world.clave("provision")

    assert done.returncode == 2
    assert "CLAVE_PROVISION_DIR=" in done.stderr and "no such directory" in done.stderr
    assert provision_world.fake.calls() == []
    assert provision_world.vms() == []


def test_a_failing_step_names_itself_and_leaves_the_base_and_its_record_untouched(
        provision_seeded):
    world = provision_seeded
    config_before, state_before = world.fake.config(BASE), host_state(world)
    world.charlie_mode("fail")
    done = world.clave("provision", "--update")

    assert done.returncode != 0
    assert "30-charlie" in done.stderr
    assert "charlie: about to fail" in done.stderr           # the tail of its output
    assert "charlie: failing on purpose" in done.stderr
    assert str(world.home / "provision.log") in done.stderr
    assert world.vms() == [BASE]                              # no build VM left
    assert world.fake.config(BASE) == config_before           # same disk config and MAC
    assert host_state(world) == state_before
    world.charlie_mode("ok")                                  # back to what the base has
    assert "Nothing to do." in world.provision("--update").stdout


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_during_a_step_removes_the_build_vm_and_keeps_the_base(
        provision_seeded, signum):
    world = provision_seeded
    config_before, state_before = world.fake.config(BASE), host_state(world)
    world.charlie_mode("hold")
    running = world.start("provision", "--update")
    world.wait_for_charlie_hold(running)
    os.kill(running.proc.pid, signum)

    assert running.finish() == 130, running.output()
    assert "Interrupted: the base VM 'clave-base' is unchanged" in running.output()
    assert world.vms() == [BASE]
    assert world.fake.config(BASE) == config_before
    assert host_state(world) == state_before
    assert not list((world.fake.home / "vms").glob("*/.fakevm"))   # the test VM is gone too


def test_a_second_provisioning_waits_for_the_first_with_a_message(provision_seeded):
    world = provision_seeded
    world.charlie_mode("hold")
    first = world.start("provision", "--update", name="first")
    world.wait_for_charlie_hold(first)
    second = world.start("provision", "--update", name="second")
    second.wait_for_output("Another `clave provision` is running; waiting for it")
    assert second.proc.poll() is None and "Provisioning" not in second.output()

    world.release_charlie()
    assert first.finish() == 0, first.output()
    assert second.finish() == 0, second.output()
    assert "Nothing to do." in second.output()          # the first built what it would have
    assert len(world.calls_for("run")) == 1


# --- clave tasks -------------------------------------------------------------------------------

def test_clave_tasks_shows_steps_up_to_date_after_a_build_and_why_one_is_stale_after_an_edit(
        provision_built):
    world = provision_built
    listed = world.clave("tasks")
    assert listed.returncode == 0, listed.stderr
    statuses = table(listed.stdout, "provision")
    assert list(statuses) == ["prepare_build_vm", "step_10-alpha", "step_20-bravo",
                              "step_30-charlie", "finalize_image"]
    assert set(statuses.values()) == {"up-to-date"}

    world.edit("20-bravo", "bravo v1", "bravo v2")
    statuses = table(world.clave("tasks").stdout, "provision")
    assert statuses == {
        "prepare_build_vm": "stale: steps to apply: 20-bravo",
        "step_10-alpha": "up-to-date",
        "step_20-bravo": "stale: changed since the base was built",
        "step_30-charlie": "up-to-date",
        "finalize_image": "stale: steps to apply: 20-bravo",
    }
    assert set(world.verbs()) == {"get"}          # listing boots nothing


# --- dodo.py: the CI image-rebuild job ---------------------------------------------------------

def doit(world: ProvisionWorld, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=ROOT,
                          env={**world.env(), **env}, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


def test_doit_provision_builds_the_base_like_clave_provision(provision_world):
    world = provision_world
    done = doit(world, "provision")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "ran 10-alpha, 20-bravo, 30-charlie." in done.stdout
    assert world.vms() == [BASE]
    assert host_state(world)["steps"] == pipeline(world).digests()
    assert "Nothing to do." in doit(world, "provision").stdout


def test_doit_push_image_without_a_registry_says_which_variable_to_set(provision_seeded):
    done = doit(provision_seeded, "push_image")

    assert done.returncode != 0
    assert "set CLAVE_IMAGE_REGISTRY to the image reference" in done.stderr
    assert provision_seeded.calls_for("push") == []


def test_doit_push_image_pushes_the_base_to_the_registry_reference(provision_seeded):
    ref = "ghcr.io/acme/clave-base:latest"
    done = doit(provision_seeded, "push_image", CLAVE_IMAGE_REGISTRY=ref)

    assert provision_seeded.calls_for("push") == [["push", BASE, ref]]
    # the fake tart does not model `push`: its refusal must come through as one sentence
    assert done.returncode != 0
    assert "doit push_image: `tart push` failed" in done.stderr
