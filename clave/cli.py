"""The `clave` command line: declares every command and hands plain values to clave/commands/.

This module only parses. Each `_cmd_<verb>` turns the Namespace into keyword values and calls
`clave.commands.<verb>`, imported there and then, so `clave --help` and `clave sessions` never
pay for doit, paramiko, blessed, jsonschema or yaml. `main()` is the one place a ClaveError
becomes a message on stderr and an exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from clave import __version__
from clave.errors import EXIT_INTERRUPTED, ClaveError, UsageError

PICK_SESSION = ""   # `--resume` without an ID: choose among this project's sessions

DESCRIPTION = """\
Run Claude Code in its own disposable Ubuntu VM, on its own clone and branch of this
Laravel project, with its own local URL. Run `clave` in three terminals for three
isolated sessions."""

EPILOG = """\
examples:
  clave                        start a session in the current project
  clave --on-exit merge        merge the session's branch back when it ends
  clave --resume               reconnect to a session of this project
  clave sessions               list running sessions
  clave exec ID -- php artisan test"""


class _Parser(argparse.ArgumentParser):
    """argparse's own errors become a UsageError: one sentence, exit 2, printed by main()."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`).")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="clave", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"clave {__version__}")
    parser.add_argument("--on-exit", metavar="keep|merge|discard",
                        help="what to do with the session's code when it ends "
                             "(default: ask; keep when there is no terminal)")
    parser.add_argument("--resume", nargs="?", const=PICK_SESSION, metavar="ID",
                        help="reconnect to a running session of this project "
                             "(asks which when ID is left out)")

    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                                     description="plain `clave` starts a session")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=summary)

    provision = command("provision", "build or update the base VM image every session clones")
    mode = provision.add_mutually_exclusive_group()
    mode.add_argument("--force", action="store_true",
                      help="rebuild the image from scratch")
    mode.add_argument("--update", action="store_true",
                      help="re-run only the provisioning steps that changed")
    provision.add_argument("--image", metavar="IMAGE",
                           help="the Ubuntu image to start from (default: the base_image setting)")

    auth = command("auth", "store a Claude Code token for the VMs (runs `claude setup-token`)")
    which = auth.add_mutually_exclusive_group()
    which.add_argument("--status", action="store_true",
                       help="show which credential sessions will use, and where it comes from")
    which.add_argument("--clear", action="store_true", help="remove the stored token")

    sessions = command("sessions", "list sessions (running, starting or left behind)")
    sessions.add_argument("--json", action="store_true", help="print a JSON array of records")

    cleanup = command("cleanup", "remove VMs, proxies, tunnels and records left by crashed "
                                 "sessions")
    cleanup.add_argument("--dry-run", action="store_true",
                         help="show what would be removed, remove nothing")

    config = command("config", "show the merged settings and where each value comes from")
    actions = config.add_subparsers(dest="config_action", metavar="ACTION")
    get = actions.add_parser("get", help="print one setting", description="print one setting")
    get.add_argument("key", metavar="KEY", help="a dotted key, e.g. vm.cpus")
    set_ = actions.add_parser("set", help="store a setting in your user config file",
                              description="store a setting in your user config file")
    set_.add_argument("key", metavar="KEY", help="a dotted key, e.g. vm.cpus")
    set_.add_argument("value", metavar="VALUE", help="the new value (checked before saving)")
    unset = actions.add_parser("unset", help="remove a setting from your user config file",
                               description="remove a setting from your user config file")
    unset.add_argument("key", metavar="KEY", help="a dotted key, e.g. vm.cpus")

    ssh = command("ssh", "open a shell in a session's VM")
    ssh.add_argument("session_id", metavar="ID", help="the session (see `clave sessions`)")

    exec_ = command("exec", "run a command in a session's VM, in the project directory")
    exec_.add_argument("session_id", metavar="ID", help="the session (see `clave sessions`)")
    exec_.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD...",
                       help="the command and its arguments, after `--`")

    command("tasks", "list the steps of every pipeline, their dependencies and status")
    command("doctor", "check that tart, herd, git and the base image are ready")
    return parser


def entry() -> NoReturn:
    """The `clave` program: main(), then exit without the interpreter's teardown.

    By then every file clave wrote is closed and flushed; unloading the two hundred
    modules a session imported would only add some 40 ms to every exit.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command is not None:
            _refuse_session_flags(args)
        return _HANDLERS[args.command](args)
    except SystemExit as done:          # --help, --version
        return done.code if isinstance(done.code, int) else 0 if done.code is None else 1
    except ClaveError as err:
        print(f"clave: {err.message}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("clave: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED


# -- commands that work now ----------------------------------------------------------------

def _cmd_sessions(args: argparse.Namespace) -> int:
    from clave.commands import sessions
    from clave.home import Home

    return sessions.run(home=Home.from_env(), as_json=args.json, out=sys.stdout)


def _cmd_tasks(args: argparse.Namespace) -> int:
    from clave.commands import tasks
    from clave.home import Home

    return tasks.run(project_dir=Path.cwd(), home=Home.from_env(), out=sys.stdout)


def _cmd_config(args: argparse.Namespace) -> int:
    from clave.commands import config

    if args.config_action == "get":
        return config.get(args.key, project_dir=Path.cwd(), out=sys.stdout)
    if args.config_action == "set":
        return config.set_value(args.key, args.value, out=sys.stdout)
    if args.config_action == "unset":
        return config.unset(args.key, out=sys.stdout)
    return config.show(project_dir=Path.cwd(), out=sys.stdout)


def _cmd_auth(args: argparse.Namespace) -> int:
    from clave.commands import auth
    from clave.home import user_config_dir

    return auth.run(status=args.status, clear=args.clear,
                    auth_file=user_config_dir() / "auth.json", out=sys.stdout)


# -- commands that need the settings and the terminal UI --------------------------------------

def _settings():
    from clave import config

    return config.load(Path.cwd())


def _ui():
    from clave.ui import Ui

    return Ui.create()


def _cmd_session(args: argparse.Namespace) -> int:
    from clave.commands import session
    from clave.context import OnExit
    from clave.home import Home

    on_exit = OnExit.coerce(args.on_exit)   # a bad value is refused before anything is created
    settings = _settings()
    if args.resume is not None:
        return session.resume(session_id=args.resume or None, project_dir=Path.cwd(),
                              on_exit=on_exit, settings=settings, home=Home.from_env(),
                              ui=_ui())
    return session.run(project_dir=Path.cwd(), on_exit=on_exit, settings=settings,
                       home=Home.from_env(), ui=_ui())


def _cmd_provision(args: argparse.Namespace) -> int:
    from clave.commands import provision
    from clave.home import Home

    return provision.run(force=args.force, update=args.update, image=args.image,
                         settings=_settings(), home=Home.from_env(), project_dir=Path.cwd(),
                         ui=_ui())


def _cmd_cleanup(args: argparse.Namespace) -> int:
    from clave.commands import cleanup
    from clave.home import Home

    return cleanup.run(dry_run=args.dry_run, settings=_settings(), home=Home.from_env(),
                       ui=_ui())


def _cmd_ssh(args: argparse.Namespace) -> int:
    from clave.commands import remote
    from clave.home import Home

    return remote.shell(session_id=args.session_id, settings=_settings(), home=Home.from_env())


def _cmd_exec(args: argparse.Namespace) -> int:
    from clave.commands import remote
    from clave.home import Home

    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise UsageError("`clave exec` needs a command after the session ID: "
                         "clave exec ID -- CMD...")
    return remote.execute(session_id=args.session_id, command=argv, settings=_settings(),
                          home=Home.from_env())


def _cmd_doctor(args: argparse.Namespace) -> int:
    from clave.commands import doctor
    from clave.home import Home

    return doctor.run(settings=_settings(), home=Home.from_env(), project_dir=Path.cwd(),
                      ui=_ui())


def _refuse_session_flags(args: argparse.Namespace) -> None:
    """--on-exit and --resume belong to plain `clave`, not next to a subcommand."""
    for flag, value in (("--on-exit", args.on_exit), ("--resume", args.resume)):
        if value is not None:
            raise UsageError(f"{flag} applies to a session (plain `clave`), "
                             f"not to `clave {args.command}`.")


_HANDLERS: dict[str | None, Callable[[argparse.Namespace], int]] = {
    None: _cmd_session,
    "provision": _cmd_provision,
    "auth": _cmd_auth,
    "sessions": _cmd_sessions,
    "cleanup": _cmd_cleanup,
    "config": _cmd_config,
    "ssh": _cmd_ssh,
    "exec": _cmd_exec,
    "tasks": _cmd_tasks,
    "doctor": _cmd_doctor,
}
