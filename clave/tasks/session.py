"""Session: a VM, a clone of the code, a URL; Claude Code runs last, outside doit.

The VM starts before the code is cloned into its (already shared) directory, so the
clone and the boot overlap. Teardown is this graph's clean: dependants first.
"""

from clave.steps.boot_vm import BootVm
from clave.steps.bootstrap_laravel import BootstrapLaravel
from clave.steps.check_host_services import CheckHostServices
from clave.steps.clone_repo import CloneRepo
from clave.steps.clone_vm import CloneVm
from clave.steps.configure_herd_proxy import ConfigureHerdProxy
from clave.steps.create_ssh_tunnel import CreateSshTunnel
from clave.steps.discover_gateway import DiscoverGateway
from clave.steps.run_claude_code import RunClaudeCode
from clave.steps.start_vm import StartVm
from clave.tasks.graph import node

LABEL = "Starting session..."

SESSION = (
    node(CloneVm),
    node(StartVm, after=CloneVm),
    node(CloneRepo, after=StartVm),
    node(BootVm, after=(StartVm, CloneRepo)),
    node(DiscoverGateway, after=BootVm),
    node(CreateSshTunnel, after=DiscoverGateway),
    node(ConfigureHerdProxy, after=CreateSshTunnel),
    node(BootstrapLaravel, after=ConfigureHerdProxy),
    node(CheckHostServices, after=BootstrapLaravel),
    node(RunClaudeCode, after=CheckHostServices),
)

# The interactive step runs outside doit (doit.md §12): the engine stops before it.
UP_TO = CheckHostServices.task_name()
INTERACTIVE = RunClaudeCode
