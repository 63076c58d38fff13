"""MariaDB and Redis on the host, where Herd runs them on a Mac, for test VMs to reach.

Bound to the gateway address (clave's `gateway` services mode: the VM connects to
<net>.1) and/or 127.0.0.1 (`tunnel` mode: SSH reverse forwards end there). Several test
runs share this machine, so a port already taken (a system MariaDB, another run) moves us
to another one: read `mysql_port` / `redis_port`, never assume 3306 / 6379.
Database `clave`, user `clave` / `secret`, allowed from <net>.% and from 127.0.0.1/localhost.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

from tests.harness import procs
from tests.harness.network import Network, write_json
from tests.harness.procs import HarnessError

DATABASE, USER, PASSWORD = "clave", "clave", "secret"
FALLBACK_PORTS = {3306: 13306, 6379: 16379}
STATE_FILE = "hostsvc.json"
TOOLS = {"mariadbd": "mariadb-server", "mariadb-install-db": "mariadb-server",
         "mariadb": "mariadb-client", "redis-server": "redis-server"}  # fmt: skip
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def unavailable_reason() -> str | None:
    """Why host services cannot run here (None when they can)."""
    if os.geteuid() != 0:
        return "host MariaDB and Redis for the VM tests need root (mariadbd runs as user mysql)."
    missing = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool, path=SBIN_PATH)})
    if missing:
        return f"host services need the Debian packages {', '.join(missing)}: apt-get install them."
    return None


class HostServices:
    """A running MariaDB + Redis pair; its record lives in STATE_DIR/hostsvc.json."""

    def __init__(self, record: dict, processes: list[subprocess.Popen] | None = None):
        self.record = record
        self._processes = processes or []

    bind = property(lambda self: list(self.record["bind"]))
    mysql_port = property(lambda self: self.record["mysql_port"])
    redis_port = property(lambda self: self.record["redis_port"])
    state_dir = property(lambda self: Path(self.record["state_dir"]))
    socket = property(lambda self: self.state_dir / "mysql-run" / "mysqld.sock")
    database, user, password = DATABASE, USER, PASSWORD

    def __repr__(self) -> str:
        return f"HostServices(bind={self.bind}, mysql={self.mysql_port}, redis={self.redis_port})"

    @classmethod
    def start(
        cls, state_dir: Path, bind: list[str], mysql_port: int = 3306, redis_port: int = 6379
    ) -> HostServices:
        """Start both servers (or return the ones already running from state_dir)."""
        reason = unavailable_reason()
        if reason:
            raise HarnessError(reason)
        state_dir = Path(state_dir).resolve()
        if (state_dir / STATE_FILE).exists():
            running = cls.from_state(state_dir)
            if running.running():
                return running  # a second mariadbd on one datadir hangs 30 s on its lock
            running.stop()
        _check_reachable_by_mysql(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        record = {"state_dir": str(state_dir), "bind": list(bind)}
        services = cls(record)
        try:
            services._start_mariadb(mysql_port)
            services._start_redis(redis_port)
            services._create_database()
        except BaseException:
            services.stop()
            raise
        return services

    @classmethod
    def from_state(cls, state_dir: Path) -> HostServices:
        try:
            return cls(json.loads((Path(state_dir) / STATE_FILE).read_text()))
        except (OSError, ValueError) as err:
            raise HarnessError(f"no host services recorded in {state_dir} ({err}).") from err

    def running(self) -> bool:
        return all(procs.alive(self.record.get(f"{n}_pid"), self.record.get(f"{n}_start"))
                   for n in ("mysql", "redis"))  # fmt: skip

    def stop(self) -> None:
        """Stop both servers by their recorded pids and remove the state; idempotent."""
        rec = self.record
        pids = [(rec.get(f"{n}_pid"), rec.get(f"{n}_start")) for n in ("redis", "mysql")]
        for pid, started in pids:
            procs.signal_pid(pid, signal.SIGTERM, started)
        if not procs.wait_gone(pids, 20):
            for pid, started in pids:
                procs.signal_pid(pid, signal.SIGKILL, started)
            procs.wait_gone(pids, 5)
        for process in self._processes:
            process.wait(5)
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def env(self, host: str, *, mysql_port: int = 0, redis_port: int = 0) -> dict[str, str]:
        """The Laravel .env values that reach these services from a VM through host."""
        return {
            "DB_CONNECTION": "mysql",
            "DB_HOST": host,
            "DB_PORT": str(mysql_port or self.mysql_port),
            "DB_DATABASE": DATABASE,
            "DB_USERNAME": USER,
            "DB_PASSWORD": PASSWORD,
            "REDIS_HOST": host,
            "REDIS_PORT": str(redis_port or self.redis_port),
        }

    def reset_database(self) -> None:
        """An empty `clave` database: the services are shared by every test of a run."""
        self.sql("DROP DATABASE IF EXISTS clave; CREATE DATABASE clave;")

    def sql(self, statements: str) -> str:
        """Run SQL as MariaDB's root (unix socket), for test assertions; tab-separated rows."""
        done = subprocess.run(
            ["mariadb", f"--socket={self.socket}", "-uroot", "--batch", "--skip-column-names"],
            input=statements, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if done.returncode != 0:
            raise HarnessError(f"SQL failed: {done.stderr.strip()}")
        return done.stdout

    # ---------------------------------------------------------------- servers
    def _start_mariadb(self, preferred: int) -> None:
        data, run_dir = self.state_dir / "mysql", self.state_dir / "mysql-run"
        for path in (data, run_dir):  # mariadbd (user mysql) dies quietly if it cannot write
            path.mkdir(exist_ok=True)
            shutil.chown(path, "mysql", "mysql")
        if not (data / "mysql").is_dir():
            procs.run(
                ["mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={data}",
                 "--skip-test-db", "--auth-root-authentication-method=socket"],
                timeout=120,
            )  # fmt: skip

        def argv(port: int) -> list[str]:
            return [
                "mariadbd", "--no-defaults", "--user=mysql", f"--datadir={data}",
                f"--bind-address={','.join(self.bind)}", f"--port={port}",
                f"--socket={run_dir}/mysqld.sock", f"--pid-file={run_dir}/mysqld.pid",
                f"--log-error={run_dir}/mysqld.err", "--skip-name-resolve",
                "--innodb-buffer-pool-size=32M", "--skip-log-bin",
            ]  # fmt: skip

        self._launch("mysql", argv, preferred, run_dir / "mysqld.err")

    def _start_redis(self, preferred: int) -> None:
        log = self.state_dir / "redis.log"

        def argv(port: int) -> list[str]:
            return [
                "redis-server", "--bind", *self.bind, "--port", str(port),
                "--protected-mode", "no", "--daemonize", "no", "--save", "", "--appendonly", "no",
                "--dir", str(self.state_dir), "--pidfile", str(self.state_dir / "redis.pid"),
                "--logfile", str(log),
            ]  # fmt: skip

        self._launch("redis", argv, preferred, log)

    def _launch(self, name: str, argv, preferred: int, log: Path) -> None:
        """Start a server on the first port that works: preferred, its fallback, then any."""
        tried = []
        for _attempt in range(4):
            port = self._free_port(preferred, tried)
            tried.append(port)
            process = subprocess.Popen(
                argv(port), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            self._processes.append(process)
            self.record.update({f"{name}_pid": process.pid, f"{name}_port": port,
                                f"{name}_start": procs.start_time(process.pid)})  # fmt: skip
            write_json(self.state_dir / STATE_FILE, self.record)
            if self._wait_listening(process, port):
                return
            process.kill()
            process.wait()
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
        raise HarnessError(f"{name} did not start on ports {tried}:\n{tail}")

    def _free_port(self, preferred: int, tried: list[int]) -> int:
        for port in (preferred, FALLBACK_PORTS.get(preferred)):
            if port and port not in tried and self._port_free(port):
                return port
        with socket.socket() as probe:  # any free port on the first address
            try:
                probe.bind((self.bind[0], 0))
            except OSError as err:
                raise HarnessError(_bind_hint(self.bind[0], err)) from err
            return probe.getsockname()[1]

    def _port_free(self, port: int) -> bool:
        for address in self.bind:
            with socket.socket() as probe:
                try:
                    probe.bind((address, port))
                except OSError as err:
                    if err.errno == 99:  # EADDRNOTAVAIL: not a port problem
                        raise HarnessError(_bind_hint(address, err)) from err
                    return False
        return True

    def _wait_listening(self, process: subprocess.Popen, port: int) -> bool:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if all(_accepts(address, port) for address in self.bind):
                return True
            time.sleep(0.05)
        return False

    def _create_database(self) -> None:
        hosts = [f"{Network.from_env().prefix}.%", "127.0.0.1", "localhost"]
        lines = [f"CREATE DATABASE IF NOT EXISTS {DATABASE};"]
        for host in hosts:  # the password goes through stdin, never argv
            lines.append(f"CREATE USER IF NOT EXISTS '{USER}'@'{host}' IDENTIFIED BY '{PASSWORD}';")
            lines.append(f"GRANT ALL ON {DATABASE}.* TO '{USER}'@'{host}';")
        self.sql("\n".join(lines))


def _accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _bind_hint(address: str, err: OSError) -> str:
    return f"cannot listen on {address} ({err.strerror}): is the test bridge up (ensure_bridge)?"


def _check_reachable_by_mysql(state_dir: Path) -> None:
    """mariadbd runs as mysql: every directory above its data must be searchable by others."""
    for parent in [p for p in state_dir.parents if p.exists()]:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise HarnessError(
                f"{parent} is not searchable by user mysql, so mariadbd cannot use {state_dir}: "
                "put host services state elsewhere (e.g. under /run/clave-fakevm)."
            )
