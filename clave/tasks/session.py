"""Session: a VM, a clone of the code, a URL; Claude Code runs last, outside doit.

The VM starts first; the code is cloned into its (already shared) directory, the tunnel is
prepared and the Herd proxy configured while it boots. Teardown is this graph's clean:
dependants first.
"""

from clave.steps.boot_vm import BootVm
from clave.steps.bootstrap_laravel import BootstrapLaravel
from clave.steps.check_host_services import CheckHostServices
from clave.steps.clone_repo import CloneRepo
from clave.steps.clone_vm import CloneVm
from clave.steps.configure_herd_proxy import ConfigureHerdProxy
from clave.steps.create_ssh_tunnel import CreateSshTunnel
from clave.steps.discover_gateway import DiscoverGateway
from clave.steps.prepare_tunnel import PrepareTunnel
from clave.steps.run_claude_code import RunClaudeCode
from clave.steps.start_vm import StartVm
from clave.tasks.graph import node

LABEL = "Starting session..."

SESSION = (
    node(CloneVm),
    node(StartVm, after=CloneVm),
    # host-side work while the VM boots
    node(CloneRepo, after=StartVm),
    node(PrepareTunnel, after=StartVm),
    node(ConfigureHerdProxy, after=PrepareTunnel),
    # the VM from here on
    node(BootVm, after=(StartVm, CloneRepo, ConfigureHerdProxy)),
    node(DiscoverGateway, after=BootVm),
    node(CreateSshTunnel, after=(DiscoverGateway, PrepareTunnel)),
    node(BootstrapLaravel, after=(CreateSshTunnel, ConfigureHerdProxy)),
    node(CheckHostServices, after=BootstrapLaravel),
    node(RunClaudeCode, after=CheckHostServices),
)

# The interactive step runs outside doit (doit.md §12): the engine stops before it.
UP_TO = CheckHostServices.task_name()
INTERACTIVE = RunClaudeCode
