"""Preflight: is this a project clave can run in, and is everything it needs there?"""

from clave.steps.check_claude_authentication import CheckClaudeAuthentication
from clave.steps.ensure_vm_exists import EnsureVmExists
from clave.steps.get_git_branch import GetGitBranch
from clave.steps.save_session import SaveSession
from clave.steps.validate_project import ValidateProject
from clave.tasks.graph import node

LABEL = "Setting up project..."

PREFLIGHT = (
    node(ValidateProject),
    node(GetGitBranch, after=ValidateProject),
    node(EnsureVmExists, after=GetGitBranch),
    node(CheckClaudeAuthentication, after=EnsureVmExists),
    node(SaveSession, after=CheckClaudeAuthentication),
)
