"""Every host-side step keeps the Step contract (STYLE.md §9, DESIGN.md "The Step contract").

undo() before run() is a no-op; run() makes done() true; undo() twice is safe; afterwards the
world holds nothing the step made. Steps that only check something create nothing, so their
done() stays true (what they checked still holds); CloneRepo keeps the clone on purpose, since
it holds the user's work and keep/merge/discard decides its fate.

Steps that need a VM over SSH (BootVm, DiscoverGateway, CreateSshTunnel, BootstrapLaravel,
CheckHostServices, RunClaudeCode) keep the contract in the end-to-end tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import pytest

from clave.context import SessionContext
from clave.steps.base import Step
from clave.steps.check_claude_authentication import CheckClaudeAuthentication
from clave.steps.clone_repo import CloneRepo
from clave.steps.clone_vm import CloneVm
from clave.steps.configure_herd_proxy import ConfigureHerdProxy
from clave.steps.ensure_vm_exists import EnsureVmExists
from clave.steps.get_git_branch import GetGitBranch
from clave.steps.save_session import SaveSession
from clave.steps.start_vm import StartVm
from clave.steps.validate_project import ValidateProject
from clave.support.auth import AuthManager
from clave.support.git import GitManager
from clave.support.herd import HerdManager
from clave.support.tart import TartManager
from tests.unit.steps.world import BASE_VM, World


class After(Enum):
    """What done() says once undo() has run."""

    GONE = "the resource is gone"
    CHECKED = "a check creates nothing, so it still holds"
    KEPT = "the user's work is kept"


@dataclass(frozen=True)
class Case:
    make: Callable[[World], tuple[Step, SessionContext]]
    after: After = After.GONE


def validate_project(world):
    return ValidateProject(), world.ctx()


def get_git_branch(world):
    return GetGitBranch(GitManager()), world.ctx()


def ensure_vm_exists(world):
    return EnsureVmExists(TartManager(), world.settings, world.provision, world.confirm), \
        world.ctx()


def check_claude_authentication(world):
    auth = AuthManager(world.root / "auth.json",
                       environ={"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-" + "x" * 50})
    return CheckClaudeAuthentication(auth, world.confirm, False), world.ctx()


def save_session(world):
    return SaveSession(world.store), world.ctx(base_branch="main")


def clone_repo(world):
    return CloneRepo(GitManager(), world.store, world.settings), world.saved_ctx()


def clone_vm(world):
    return CloneVm(TartManager(), world.store, world.settings), world.saved_ctx()


def start_vm(world):
    world.tart("clone", BASE_VM, "clave-abcd1234")          # CloneVm's part, done by hand
    ctx = world.saved_ctx(vm_name="clave-abcd1234")
    return StartVm(TartManager(), world.store, world.home), ctx


def configure_herd_proxy(world):
    return (ConfigureHerdProxy(HerdManager(), world.store, world.settings),
            world.saved_ctx(tunnel_port=8123))


def configure_herd_proxy_without_herd(world):
    herd = HerdManager(environ={"PATH": "/usr/bin:/bin", "HOME": str(world.herd_home)})
    return (ConfigureHerdProxy(herd, world.store, world.settings),
            world.saved_ctx(tunnel_port=8123))


CASES = {
    "ValidateProject": Case(validate_project, After.CHECKED),
    "GetGitBranch": Case(get_git_branch, After.CHECKED),
    "EnsureVmExists": Case(ensure_vm_exists, After.CHECKED),
    "CheckClaudeAuthentication": Case(check_claude_authentication, After.CHECKED),
    "SaveSession": Case(save_session),
    "CloneRepo": Case(clone_repo, After.KEPT),
    "CloneVm": Case(clone_vm),
    "StartVm": Case(start_vm),
    "ConfigureHerdProxy": Case(configure_herd_proxy),
    "ConfigureHerdProxy-without-Herd": Case(configure_herd_proxy_without_herd, After.CHECKED),
}


@pytest.mark.parametrize(("name", "case"), CASES.items(), ids=CASES.keys())
def test_step_contract(name: str, case: Case, world: World):
    step, ctx = case.make(world)
    assert type(step).__name__ == name.split("-")[0]
    before = world.leftovers()
    step.undo(ctx)                                  # before run: a no-op
    assert world.leftovers() == before
    step.run(ctx)
    assert step.done(ctx)
    step.undo(ctx)
    step.undo(ctx)                                  # idempotent
    assert step.done(ctx) is (case.after is not After.GONE)
    assert world.leftovers() == before


def test_clone_repo_keeps_a_real_clone_through_its_undo(world):
    step, ctx = clone_repo(world)
    step.run(ctx)
    step.undo(ctx)
    assert GitManager().clone_exists(ctx.clone_path)


def test_start_vm_is_done_only_while_its_vm_runs(world):
    step, ctx = start_vm(world)
    assert not step.done(ctx)
    step.run(ctx)
    assert step.done(ctx)                    # its own `tart run`, starting
    deadline = time.monotonic() + 30
    while world.tart("stop", "clave-abcd1234", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the VM never ran"
        time.sleep(0.05)
    ctx.tart_run.proc.wait(10)
    assert not step.done(ctx)
