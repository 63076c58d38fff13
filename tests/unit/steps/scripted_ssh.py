"""An in-process SshExecutor stand-in: answers only the commands a test prepared."""

from __future__ import annotations

from dataclasses import dataclass, field

from clave.errors import CommandFailed
from clave.support.command import Result


@dataclass
class ScriptedSsh:
    """`answers` maps a piece of a command to (exit, stdout, stderr); the first match wins.

    Anything unprepared raises, so a test notices every command a step starts sending.
    """

    answers: list[tuple[str, tuple[int, str, str]]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    interactive_commands: list[str] = field(default_factory=list)
    interactive_exit: int = 0

    def answer(self, piece: str, stdout: str = "", exited: int = 0, stderr: str = "") -> None:
        self.answers.append((piece, (exited, stdout, stderr)))

    def run(self, command: str, timeout: float = 60, *, check: bool = False,
            env=None) -> Result:
        self.commands.append(command)
        for piece, (exited, stdout, stderr) in self.answers:
            if piece in command:
                result = Result(("ssh", command), exited, stdout, stderr)
                if check and not result.ok:
                    raise CommandFailed(result)
                return result
        raise AssertionError(f"unprepared remote command: {command!r}")

    def put_file(self, remote_path: str, content: bytes, mode: int = 0o600) -> None:
        self.files[remote_path] = (content, mode)

    def put_files(self, files) -> None:
        for remote_path, (content, mode) in files.items():
            self.put_file(remote_path, content, mode)

    def interactive(self, command: str, env=None) -> int:
        self.interactive_commands.append(command)
        return self.interactive_exit
