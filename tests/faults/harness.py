"""Real processes on loopback for the fault-injection suite: a private Redis, a
fault-injecting proxy in front of the ERP, and the hub's web, worker and sweeper
processes, which the scenarios kill, stop and restart."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], object], timeout: float = 60, what: str = "condition", every: float = 0.1):
    """Poll until ``predicate()`` is truthy and return it; fail the scenario with ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(every)
    pytest.fail(f"timed out waiting for {what}")


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private redis-server, so a scenario can flush it or take it down."""

    def __init__(self, workdir: Path):
        self.port, self.workdir = free_port(), workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def flush(self) -> None:
        import redis

        redis.Redis.from_url(self.url).flushall()


class RabbitMQServer:
    """A private RabbitMQ node (its own node name, ports, data and config; the machine's
    epmd is shared), so a scenario can SIGKILL and restart the broker without touching
    the machine's RabbitMQ. Its data survives a restart, as a real node's does."""

    def __init__(self):
        self.port, self.dist_port = free_port(), free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="hub-faults-rabbitmq-"))
        self.name = f"hubfaults{os.getpid()}@localhost"
        self.process: subprocess.Popen | None = None
        self.server = shutil.which("rabbitmq-server", path="/usr/lib/rabbitmq/bin:" + os.environ.get("PATH", ""))
        if self.server is None:
            raise RuntimeError("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n")
        (self.dir / "rabbitmq-env.conf").write_text("")
        (self.dir / "enabled_plugins").write_text("[].\n")
        self.env = {
            **os.environ, "HOME": str(self.dir), "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"), "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "rabbitmq.pid"),
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self, timeout: float = 90) -> RabbitMQServer:
        log = open(self.dir / "server.log", "a")
        self.process = subprocess.Popen([self.server], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited:\n{(self.dir / 'server.log').read_text()[-3000:]}")
            if self._answers():
                return self
            time.sleep(0.3)
        raise RuntimeError(f"rabbitmq-server did not start:\n{(self.dir / 'server.log').read_text()[-3000:]}")

    def _answers(self) -> bool:
        from kombu import Connection

        try:
            with Connection(self.url, connect_timeout=1) as connection:
                connection.ensure_connection(max_retries=1)
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def kill(self) -> None:
        """SIGKILL the whole node (beam and its helpers), as a crashed host would."""
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class ProxyCall:
    at: float
    method: str
    status: int
    injected: bool
    body: bytes = b""


@dataclass
class FaultProxy:
    """Forwards JSON-RPC to the ERP (or any HTTP API: Stripe's), or injects a fault. A
    scenario sets ``fault``: a function of the RPC method (for a body that is not
    JSON-RPC, the request path) and body returning None (forward) or an action."""

    upstream: str
    port: int = field(default_factory=free_port)
    fault: Callable[[str, bytes], dict | None] | None = None
    calls: list[ProxyCall] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    # Request headers passed upstream (Stripe's API also needs Idempotency-Key and Stripe-Version).
    forward_headers: tuple[str, ...] = ("authorization", "content-type")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    method = json.loads(body).get("method") or self.path
                except (ValueError, AttributeError):
                    method = self.path
                action = proxy.fault(method, body) if proxy.fault else None
                if action and action.get("hang"):
                    time.sleep(action["hang"])
                if action and action.get("status"):
                    proxy.calls.append(ProxyCall(time.monotonic(), method, action["status"], True, body))
                    self.send_response(action["status"])
                    for name, value in action.get("headers", {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if action and action.get("drop"):
                    proxy.calls.append(ProxyCall(time.monotonic(), method, 0, True, body))
                    self.close_connection = True
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() in proxy.forward_headers}
                response = httpx.post(proxy.upstream + self.path, content=body, headers=headers, timeout=60)
                if action and action.get("drop_answer"):
                    # The ERP did the work; its answer never reaches the hub.
                    proxy.calls.append(ProxyCall(time.monotonic(), method, response.status_code, True, body))
                    self.close_connection = True
                    return
                proxy.calls.append(ProxyCall(time.monotonic(), method, response.status_code, False, body))
                if action and action.get("after_forward"):
                    action["after_forward"]()  # e.g. block until the worker is killed
                self.send_response(response.status_code)
                self.send_header("Content-Type", response.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(response.content)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(response.content)

            def do_GET(self):
                headers = {k: v for k, v in self.headers.items() if k.lower() in proxy.forward_headers}
                response = httpx.get(proxy.upstream + self.path, headers=headers, timeout=30)
                self.send_response(response.status_code)
                self.send_header("Content-Type", response.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(response.content)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the caller gave up (its read timeout)
                    self.wfile.write(response.content)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def reset(self) -> None:
        self.fault, self.calls = None, []

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


class HubProcesses:
    """The hub's own processes for one scenario, each in its own process group."""

    def __init__(self, env: dict[str, str], logdir: Path):
        self.env, self.logdir = env, logdir
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str], ready: str | None = None, timeout: float = 60) -> None:
        log_path = self.logdir / f"{name}.log"
        log = open(log_path, "a")
        self.processes[name] = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        if ready:
            deadline = time.monotonic() + timeout
            while ready not in log_path.read_text(errors="replace"):
                if self.processes[name].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
                time.sleep(0.1)

    def worker(self, name: str = "worker", concurrency: int = 2) -> None:
        self.start(name, [sys.executable, "-m", "celery", "-A", "integration_hub", "worker", "-c", str(concurrency),
                          # Every hub queue but the bulk usage one (its own worker, as in production).
                          "-X", self.env.get("HUB_USAGE_QUEUE", f"{self.env['HUB_QUEUE']}-usage"), "--without-gossip", "--without-mingle", "-l", "INFO",
                          "-n", f"{name}-{os.getpid()}-{time.monotonic_ns()}@%h"], ready="ready.")

    def web(self, port: int) -> None:
        self.start("web", [sys.executable, "-m", "gunicorn", "integration_hub.wsgi", "--bind", f"127.0.0.1:{port}",
                           "--workers", "2", "--timeout", "30"], ready="Booting worker")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/admin/login/", timeout=2)
                return
            time.sleep(0.1)

    def sweeper(self, name: str = "sweeper", every: float = 1.0) -> None:
        self.start(name, [sys.executable, "manage.py", "hub_sweep", "--every", str(every)])

    def signal(self, name: str, sig: int) -> None:
        process = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)

    def wait(self, name: str, timeout: float = 60) -> int | None:
        try:
            return self.processes[name].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.signal(name, signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.signal(name, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()


class PrivatePostgres:
    """A PostgreSQL cluster of the scenario's own, so it can be restarted mid-run
    without touching the machine's server."""

    def __init__(self):
        # Its own directory outside pytest's (private to root): the postgres user owns it.
        self.port, self.dir = free_port(), Path(tempfile.mkdtemp(prefix="hub-faults-pg-"))
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not candidates:
            raise RuntimeError("PostgreSQL server binaries are not installed (apt-get install postgresql)")
        self.bin = candidates[-1]
        # initdb refuses to run as root: the cluster belongs to the postgres user.
        self.runas = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/hub"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.runas, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> PrivatePostgres:
        if self.runas:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--locale=C.UTF-8")
        self.pg_ctl("start")
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "hub")
        return self

    def pg_ctl(self, command: str) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-o", options, "-w", "-m", "fast",
                  "-l", str(self.dir / "server.log"), command)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.pg_ctl("stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def query(self, sql: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=hub", autocommit=True) as db:
            return db.execute(sql).fetchall()
