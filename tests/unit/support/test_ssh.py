"""SshExecutor against a real OpenSSH server on 127.0.0.1 (see sshd.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from clave.errors import ClaveError, CommandFailed, HostKeyChanged
from clave.support.ssh import SshExecutor, quote
from tests.unit.support.sshd import PtyChild, blackhole, free_port, wait_until


def executor(server, **kwargs) -> SshExecutor:
    return SshExecutor(server.user, server.port, **kwargs).set_host(server.host).use_password(
        server.password
    )


@pytest.fixture
def ssh(sshd):
    with executor(sshd) as ex:
        yield ex


def test_run_returns_exit_code_stdout_and_stderr(ssh, sshd):
    result = ssh.run("echo out; echo err >&2; exit 3")
    assert (result.exited, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert result.argv == ("ssh", f"{sshd.user}@127.0.0.1", "echo out; echo err >&2; exit 3")
    assert not result.ok


def test_run_runs_in_the_users_login_shell_and_home(ssh, sshd):
    result = ssh.run('echo "$SHELL"; pwd; id -un')
    assert result.stdout.splitlines() == ["/bin/bash", f"/home/{sshd.user}", sshd.user]


def test_run_feeds_input_to_the_command(ssh):
    assert ssh.run("tr a-z A-Z", input="hello\n").stdout == "HELLO\n"


def test_run_without_input_gives_the_command_an_empty_stdin(ssh):
    assert ssh.run("cat; echo done", timeout=5).stdout == "done\n"


def test_run_keeps_large_stdout_and_stderr_apart(ssh):
    result = ssh.run("head -c 300000 /dev/zero | tr '\\0' o; head -c 300000 /dev/zero >&2")
    assert len(result.stdout) == 300000 and set(result.stdout) == {"o"}
    assert len(result.stderr) == 300000


def test_check_raises_command_failed_naming_the_command(ssh):
    with pytest.raises(CommandFailed) as caught:
        ssh.run("echo broken >&2; exit 4", check=True)
    assert caught.value.result.exited == 4
    assert "exit 4" in str(caught.value) and "echo broken" in str(caught.value)
    assert str(caught.value).endswith("broken")


def test_env_reaches_the_command_without_argv_and_leaves_no_file(ssh):
    secret = "s3cr3t 'quoted' $(touch pwned) \"x\""
    result = ssh.run('printf %s "$TOKEN"; ps -eo args | grep -c "[s]3cr3t" >&2; ls -A ~ >&2',
                     env={"TOKEN": secret})
    assert result.stdout == secret
    assert result.stderr.splitlines()[0] == "0"  # never in any remote argv
    assert ".bashrc" in result.stderr
    assert ".clave-env" not in result.stderr and "pwned" not in result.stderr


def test_env_with_an_invalid_name_is_refused(ssh):
    with pytest.raises(ClaveError, match="not a valid variable name"):
        ssh.run("true", env={"BAD-NAME": "x"})


def test_a_timeout_is_bounded_names_host_and_command_and_stops_the_command(ssh, sshd):
    started = time.monotonic()
    with pytest.raises(ClaveError) as caught:
        ssh.run("sleep 30", timeout=1)
    assert time.monotonic() - started < 5
    assert str(caught.value) == "`sleep 30` on 127.0.0.1 did not finish within 1 s; it was stopped."
    assert wait_until(lambda: "sleep 30" not in user_commands(sshd), timeout=5)
    assert ssh.run("echo still usable").stdout == "still usable\n"


def test_a_chatty_command_still_times_out(ssh):
    started = time.monotonic()
    with pytest.raises(ClaveError, match="did not finish within 1 s"):
        ssh.run("while :; do echo tick; sleep 0.1; done", timeout=1)
    assert time.monotonic() - started < 5


def test_names_with_spaces_quotes_substitutions_and_unicode_survive_quoting(ssh):
    names = ["with space", "it's", 'dq"uote', "$(touch pwned)", "`id`", "ünï cødé ✓", "-n"]
    for name in names:
        ssh.run(f"mkdir -p q && printf %s {quote(name)} > q/{quote(name)}", check=True)
    listing = ssh.run("ls -A q; ls -A", check=True).stdout
    for name in names:
        assert ssh.run(f"cat q/{quote(name)}", check=True).stdout == name
        assert name in listing.splitlines()
    assert "pwned" not in listing.splitlines()
    ssh.run("rm -rf q", check=True)


def test_put_file_creates_the_file_with_its_mode(ssh, sshd):
    ssh.put_file("secret.env", b"TOKEN=abc\n")
    path = Path(f"/home/{sshd.user}/secret.env")
    assert path.read_bytes() == b"TOKEN=abc\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert ssh.run("stat -c %a secret.env").stdout.strip() == "600"


def test_put_file_narrows_the_mode_of_an_existing_file_before_writing(ssh, sshd):
    ssh.run("printf old > shared.txt && chmod 644 shared.txt", check=True)
    ssh.put_file("shared.txt", b"new", mode=0o640)
    path = Path(f"/home/{sshd.user}/shared.txt")
    assert (path.read_bytes(), path.stat().st_mode & 0o777) == (b"new", 0o640)


def test_put_file_into_a_missing_directory_is_a_clear_error(ssh):
    with pytest.raises(ClaveError) as caught:
        ssh.put_file("no/such/dir/x", b"x")
    assert str(caught.value) == "cannot write no/such/dir/x on 127.0.0.1: no such file"


def test_a_wrong_password_is_one_clear_sentence(sshd):
    ex = SshExecutor(sshd.user, sshd.port).set_host(sshd.host).use_password("wrong")
    started = time.monotonic()
    with pytest.raises(ClaveError) as caught:
        ex.run("true")
    assert str(caught.value) == f"SSH login as {sshd.user}@127.0.0.1 failed: wrong password"
    assert time.monotonic() - started < 10  # sshd delays failed logins a little
    assert not ex.test() and ex.last_error() == str(caught.value)


def test_a_closed_port_is_refused_at_once():
    port = free_port()
    ex = SshExecutor("admin", port).set_host("127.0.0.1").use_password("admin")
    started = time.monotonic()
    with pytest.raises(ClaveError) as caught:
        ex.run("true")
    assert str(caught.value) == f"cannot reach admin@127.0.0.1:{port}: connection refused"
    assert time.monotonic() - started < 2


def test_a_host_that_never_answers_fails_after_the_connect_timeout():
    with blackhole() as port:
        ex = SshExecutor("admin", port, connect_timeout=1).set_host("127.0.0.1")
        started = time.monotonic()
        assert ex.test() is False
        elapsed = time.monotonic() - started
    assert ex.last_error() == f"cannot reach admin@127.0.0.1:{port}: no answer within 1 s"
    assert 0.9 < elapsed < 3


def test_test_reports_success_and_clears_the_last_error(ssh):
    assert ssh.test() is True and ssh.last_error() is None


def test_test_never_raises_without_a_host():
    ex = SshExecutor()
    assert ex.test() is False
    assert "no SSH host is set" in ex.last_error()


def test_wait_ready_returns_once_sshd_answers(ssh):
    ssh.wait_ready(timeout=5)
    assert ssh.host_key_fingerprint.startswith("SHA256:")


def test_wait_ready_names_host_timeout_and_last_error():
    port = free_port()
    ex = SshExecutor("admin", port).set_host("127.0.0.1").use_password("admin")
    started = time.monotonic()
    with pytest.raises(ClaveError) as caught:
        ex.wait_ready(timeout=1)
    assert time.monotonic() - started < 3
    assert str(caught.value) == (
        f"admin@127.0.0.1 did not accept SSH logins within 1 s (last error: cannot reach "
        f"admin@127.0.0.1:{port}: connection refused)."
    )


def test_wait_ready_waits_for_a_server_that_starts_late(own_sshd):
    own_sshd.stop()
    ex = executor(own_sshd)
    assert ex.test() is False  # really down
    late = threading.Timer(0.7, own_sshd.start)
    late.start()
    try:
        ex.wait_ready(timeout=10)
    finally:
        late.join()
    assert ex.run("echo up").stdout == "up\n"
    ex.close()


def test_a_changed_host_key_is_refused_within_the_session(own_sshd):
    ex = executor(own_sshd)
    assert ex.run("true").ok
    first = ex.host_key_fingerprint
    own_sshd.restart(new_host_key=True)
    ex.close()
    with pytest.raises(HostKeyChanged) as caught:
        ex.run("true")
    assert str(caught.value).startswith(
        f"the SSH host key of 127.0.0.1 changed during this session ({first} before, SHA256:"
    )
    assert str(caught.value).endswith("); refusing to connect.")
    started = time.monotonic()
    with pytest.raises(HostKeyChanged):
        ex.wait_ready(timeout=30)  # stops at once: waiting cannot fix a changed key
    assert time.monotonic() - started < 5


def test_a_later_process_keeps_the_pin_through_pin_host_key(own_sshd):
    first = executor(own_sshd)
    assert first.test()
    later = executor(own_sshd).pin_host_key(first.host_key_fingerprint)
    assert later.test()
    own_sshd.restart(new_host_key=True)
    later.close()
    assert later.test() is False
    assert "changed during this session" in later.last_error()
    first.close()


def test_close_is_idempotent_and_the_next_call_reconnects(ssh):
    ssh.close()
    ssh.close()
    assert ssh.run("echo again").stdout == "again\n"


def test_repr_does_not_show_the_password(ssh, sshd):
    assert sshd.password not in repr(ssh) and sshd.password not in str(vars(ssh).keys())


# -- interactive, through a real pseudo-terminal ------------------------------------------

def test_interactive_returns_the_remote_exit_code_and_restores_the_terminal(sshd):
    child = PtyChild(sshd, "printf hi; exit 3")
    assert child.finish() == 3
    assert b"hi" in child.output
    assert b"[restored=True code=3 error=None]" in child.output


def test_interactive_gives_the_remote_program_a_tty_of_the_local_size_and_term(sshd):
    child = PtyChild(sshd, 'tty; stty size; echo "term=$TERM"', size=(33, 101))
    assert child.finish() == 0
    text = child.output.decode()
    assert "/dev/pts/" in text and "33 101" in text and "term=xterm-test" in text


def test_interactive_forwards_window_size_changes(sshd):
    child = PtyChild(sshd, "echo ready; read line; stty size", size=(24, 80))
    child.read_until(b"ready")
    child.resize(40, 120)  # the kernel sends SIGWINCH to the child
    child.write(b"go\r")
    assert child.finish() == 0
    assert b"40 120" in child.output


def test_interactive_passes_stdin_and_env_through(sshd):
    child = PtyChild(sshd, 'read line; echo "got:$line:$GREETING"', env={"GREETING": "hé llo"})
    child.write(b"typed\r")
    assert child.finish() == 0
    assert "got:typed:hé llo" in child.output.decode()


def test_ctrl_c_reaches_the_remote_program_instead_of_killing_clave(sshd):
    child = PtyChild(sshd, "trap 'echo got-int; exit 7' INT; echo ready; "
                           "while :; do sleep 0.1; done")
    child.read_until(b"ready")
    child.write(b"\x03")
    assert child.finish() == 7
    assert b"got-int" in child.output and b"[restored=True code=7" in child.output


def test_a_remote_program_killed_by_a_signal_returns_255_and_says_so(sshd):
    child = PtyChild(sshd, "kill -KILL $$")
    assert child.finish() == 255
    assert b"ended without an exit status (killed by a signal?)" in child.output


def test_an_interrupt_of_clave_itself_restores_the_terminal(sshd):
    child = PtyChild(sshd, "echo ready; sleep 30")
    child.read_until(b"ready")
    os.kill(child.pid, signal.SIGTERM)
    assert child.finish() == 130
    assert b"[restored=True code=130" in child.output


def test_a_dropped_connection_returns_255_with_last_error_and_restores_the_terminal(own_sshd):
    child = PtyChild(own_sshd, "echo ready; sleep 30")
    child.read_until(b"ready")
    own_sshd.kill_all()
    assert child.finish() == 255
    assert b"[restored=True code=255 error=the SSH connection to 127.0.0.1 dropped" in (
        child.output
    )


def user_commands(server) -> list[str]:
    out = []
    for pid in server.session_pids():
        with contextlib.suppress(OSError):
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return out


# -- stream: `clave exec` in a pipeline ------------------------------------------------------


def test_stream_passes_stdin_on_with_its_eof_and_keeps_the_streams_apart(ssh, tmp_path):
    read, write = os.pipe()
    os.write(write, b"from the pipe\n")
    os.close(write)
    out, err = (tmp_path / "out").open("w+b"), (tmp_path / "err").open("w+b")
    try:
        code = ssh.stream("cat; echo done; echo oops >&2; exit 3", read, out, err)
    finally:
        os.close(read)
    assert code == 3 and ssh.last_error() is None
    assert (tmp_path / "out").read_bytes() == b"from the pipe\ndone\n"
    assert (tmp_path / "err").read_bytes() == b"oops\n"


def test_stream_without_stdin_gives_the_command_an_empty_one(ssh, tmp_path):
    out = (tmp_path / "out").open("w+b")
    assert ssh.stream("cat; echo done", None, out, out) == 0
    assert (tmp_path / "out").read_bytes() == b"done\n"


def test_stream_hands_output_over_while_the_command_still_runs(ssh):
    read, write = os.pipe()
    codes: list[int] = []
    with os.fdopen(write, "wb") as out:
        runner = threading.Thread(
            target=lambda: codes.append(ssh.stream("echo first; sleep 3; echo second", None,
                                                   out, out)))
        runner.start()
        first = os.read(read, 100)
        still_running = runner.is_alive()
        runner.join(15)
    rest = os.read(read, 100)
    os.close(read)
    assert (first, still_running) == (b"first\n", True)
    assert (rest, codes) == (b"second\n", [0])


def test_stream_never_blocks_on_input_a_command_does_not_read(ssh, tmp_path):
    read, write = os.pipe()

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError), os.fdopen(write, "wb") as pipe:
            pipe.write(b"x" * 5_000_000)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    out = (tmp_path / "out").open("w+b")
    codes: list[object] = []

    def run() -> None:
        try:
            codes.append(ssh.stream("head -c 3000000 /dev/zero", read, out, out))
        except Exception as err:  # noqa: BLE001 - shown by the assertion below
            codes.append(err)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(60)
    os.close(read)
    assert codes == [0], "the stream blocked: input nobody reads held the output back"
    assert (tmp_path / "out").stat().st_size == 3_000_000


def test_stream_stops_the_command_when_its_reader_goes_away(ssh, sshd):
    read, write = os.pipe()
    tag = f"tick-{os.getpid()}-{time.monotonic_ns()}"
    with os.fdopen(write, "wb", buffering=0) as out:
        os.close(read)                                      # `clave exec … | head` is gone
        code = ssh.stream(f"while :; do echo {tag}; done", None, out, out)
    assert code == 141
    looking = f"pgrep -f '[{tag[0]}]{tag[1:]}' || true"   # a pattern that is not its own line
    assert wait_until(lambda: ssh.run(looking).stdout.strip() == "", 10)


def test_a_stream_whose_connection_drops_returns_255_with_last_error(own_sshd, tmp_path):
    out = (tmp_path / "out").open("w+b")
    codes: list[int] = []
    with executor(own_sshd) as ssh:
        runner = threading.Thread(target=lambda: codes.append(
            ssh.stream("echo ready; sleep 30", None, out, out)), daemon=True)
        runner.start()
        assert wait_until(lambda: (tmp_path / "out").read_bytes() == b"ready\n", 10)
        own_sshd.kill_all()
        runner.join(20)
        assert codes == [255]
        assert ssh.last_error().startswith("the SSH connection to 127.0.0.1 dropped")
