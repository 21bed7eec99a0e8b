"""The production stack, natively: the compose file's own commands (migrate,
collectstatic, gunicorn, worker, beat) with HUB_ENV=production and the compose
file's settings, against PostgreSQL and Redis, driven by a signed Stripe webhook
into the real Tryton ERP. Docker cannot run here; this runs what the containers run.
The same stack also runs with RabbitMQ as the broker (quorum queues), with the ERP's
first answer a 503 so that the retry rides on a countdown through the broker."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography.fernet import Fernet
from django.conf import settings

from connectors.stripe.sandbox import StripeSandbox
from tests.conftest import WEBHOOK_SECRET, require_rabbitmq, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.stack]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _native(command: list[str], port: int, queue: str = "hub") -> list[str]:
    """The container's command on this machine: the venv's executables, the web bind
    on a private loopback port instead of 0.0.0.0:8000, and the workers on this run's
    queues (the compose file's "hub…" names with this run's HUB_QUEUE)."""
    program = {"python": sys.executable}.get(command[0], str(BIN / command[0]))
    args = list(command[1:])
    if "--bind" in args:
        args[args.index("--bind") + 1] = f"127.0.0.1:{port}"
    if "-Q" in args:
        queues = args[args.index("-Q") + 1].split(",")
        args[args.index("-Q") + 1] = ",".join(queue + name.removeprefix("hub") for name in queues)
    return [program, *args]


@pytest.fixture
def production_database():
    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql") or not settings.CELERY_BROKER_URL.startswith("redis"):
        if os.environ.get("CI"):
            pytest.fail("the production stack test needs PostgreSQL and Redis (DATABASE_URL, CELERY_BROKER_URL)")
        pytest.skip("needs PostgreSQL and Redis (as CI has): set DATABASE_URL and CELERY_BROKER_URL")
    import psycopg

    name = f"{db['NAME']}_prod_{uuid.uuid4().hex[:6]}"
    dsn = dict(host=db.get("HOST") or "127.0.0.1", port=db.get("PORT") or 5432, user=db.get("USER") or "postgres",
               password=db.get("PASSWORD") or None)
    with psycopg.connect(dbname="postgres", autocommit=True, **dsn) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    auth = f"{dsn['user']}:{dsn['password']}@" if dsn["password"] else f"{dsn['user']}@"
    yield f"postgres://{auth}{dsn['host']}:{dsn['port']}/{name}"
    with psycopg.connect(dbname="postgres", autocommit=True, **dsn) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def rabbitmq():
    """The RabbitMQ broker's URL (``HUB_TEST_AMQP_URL``); fails (never skips) when it is
    unreachable, like CI's other services."""
    return require_rabbitmq()


class FlakyProxy:
    """An HTTP proxy in front of the ERP that answers its first ``failures`` requests
    with 503 and forwards the rest."""

    def __init__(self, target: str, failures: int = 1):
        self.target, self.failures, self.answered_503 = target.rstrip("/"), failures, 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.answered_503 < proxy.failures:
                    proxy.answered_503 += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = httpx.post(proxy.target + self.path, content=body, headers=headers, timeout=30)
                self.send_response(answer.status_code)
                for name in ("Content-Type", "Set-Cookie"):
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_compose_services_in_production_mode_post_a_signed_webhook_into_the_erp(
    production_database, tryton_server, erp, tmp_path
):
    _run_stack(production_database, tryton_server, erp, tmp_path, broker=settings.CELERY_BROKER_URL)


def test_the_stack_on_rabbitmq_quorum_queues_posts_once_with_the_retry_delayed_by_the_broker(
    production_database, rabbitmq, tryton_server, erp, tmp_path
):
    from kombu import Connection

    queue = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-prod-amqp"
    queues = [queue + suffix for suffix in ("", "-finance", "-customer", "-catalog", "-usage")]

    def delete_queues():
        with Connection(rabbitmq) as connection:
            for name in queues:
                connection.default_channel.queue_delete(name)

    delete_queues()  # a run killed midway may have left messages behind
    proxy = FlakyProxy(tryton_server.url, failures=1)
    try:
        config = {**tryton_server.connection_config(), "url": proxy.url}
        env, attempts = _run_stack(
            production_database, tryton_server, erp, tmp_path, broker=rabbitmq, queue=queue, erp_config=config,
            # Only the broker can bring the retry back in time: the sweeper would wait 10 min.
            extra_env={"HUB_REENQUEUE_AFTER_SECONDS": "600"},
        )
        assert proxy.answered_503 == 1
        # One attempt met the 503 and was retried after a countdown; every delivery posted.
        failed = [a for a in attempts if a["outcome"] != "posted"]
        assert [(a["outcome"], a["http_status"]) for a in failed] == [("retryable", 503)], attempts
        with Connection(rabbitmq) as connection:
            channel = connection.default_channel
            for name in queues:  # the invoice went through the finance queue, its retry too
                # A quorum queue redeclared as quorum is accepted; as classic it is refused.
                channel.queue_declare(name, durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"})
            from amqp.exceptions import PreconditionFailed

            with pytest.raises(PreconditionFailed):
                connection.channel().queue_declare(queue, durable=True, auto_delete=False,
                                                   arguments={"x-queue-type": "classic"})
            # Native delayed delivery's exchanges exist (declared by the worker at start).
            connection.channel().exchange_declare("celery_delayed_27", "topic", durable=True, passive=True)
            connection.channel().exchange_declare("celery_delayed_delivery", "topic", durable=True, passive=True)
    finally:
        proxy.close()
        delete_queues()


def _run_stack(production_database, tryton_server, erp, tmp_path, *, broker: str, queue: str | None = None,
               erp_config: dict | None = None, extra_env: dict | None = None):
    """Run the compose services natively against ``broker``, post one signed invoice
    webhook and wait for the invoice to be posted in the ERP exactly once. Returns the
    environment and the delivery's attempts (outcome, http_status), oldest first."""
    compose = _compose()
    hub_environment = compose["x-hub"]["environment"]
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "DJANGO_"))},
        # The compose file's settings, with this machine's values for its variables.
        "HUB_ENV": hub_environment["HUB_ENV"],
        "SECRET_KEY": secrets.token_urlsafe(50),
        "HUB_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": production_database,
        "CELERY_BROKER_URL": broker,
        "HUB_CACHE_URL": settings.CELERY_BROKER_URL,
        # The governor's state stays in Redis whatever the broker (docs/scaling.md).
        "HUB_REDIS_URL": settings.CELERY_BROKER_URL,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        # The Tryton under test is on loopback: a self-hosted ERP must be named.
        "HUB_ALLOWED_INTERNAL_HOSTS": "127.0.0.1",
        "LOG_JSON": hub_environment["LOG_JSON"],
        "HUB_QUEUE": queue or f"{settings.CELERY_TASK_DEFAULT_QUEUE}-prod",
        "HUB_VAR_DIR": str(tmp_path / "var"),
        "HUB_USAGE_STORAGE_DIR": str(tmp_path / "usage"),
        "HUB_SWEEP_INTERVAL_SECONDS": "5",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    assert set(hub_environment) <= set(env), set(hub_environment) - set(env)  # every compose setting is given
    services = {name: spec for name, spec in compose["services"].items() if "build" in spec}

    def run(command: list[str]) -> str:
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return result.stdout

    run(_native(services["migrate"]["command"], port))
    run(_native(services["collectstatic"]["command"], port))
    run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"])
    config, credentials = erp_config or tryton_server.connection_config(), tryton_server.credentials()
    run([sys.executable, "manage.py", "shell", "-c", (
        "from canonical.models import LegalEntity; from connectors.services import connection_upsert; "
        "LegalEntity.objects.create(code='US', name='Acme US Inc.', currency='USD', country='US'); "
        "from canonical.policy_services import policy_bootstrap; policy_bootstrap(taxes={'10': 'VAT-10', '0': ''}); "
        f"connection_upsert(name='stripe', vendor='stripe', role='billing', config={{}}, "
        f"credentials={{'webhook_secrets': [{WEBHOOK_SECRET!r}]}}); "
        f"connection_upsert(name='tryton', vendor='tryton', role='erp', config={config!r}, "
        f"credentials={credentials!r})"
    )])

    processes, logs = [], {}
    try:
        for name in ("web", "worker", "finance-worker", "usage-worker", "beat"):
            log = open(tmp_path / f"{name}.log", "w")
            logs[name] = tmp_path / f"{name}.log"
            processes.append(subprocess.Popen(_native(services[name]["command"], port, env["HUB_QUEUE"]), cwd=ROOT, env=env,
                                              stdout=log, stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}"
        https = {"X-Forwarded-Proto": "https"}  # what the TLS proxy in front adds

        def web_up():
            try:
                return httpx.get(f"{base}/admin/login/", headers=https, timeout=2).status_code
            except httpx.HTTPError:
                return False

        status = wait_for(web_up, timeout=60, what="gunicorn to answer")
        assert status == 200, (status, logs["web"].read_text()[-1500:])
        assert httpx.get(f"{base}/api/deliveries/", headers=https, timeout=5).status_code == 401

        plain = httpx.get(f"{base}/api/schema/", timeout=5)
        assert plain.status_code == 301 and plain.headers["location"].startswith("https://")
        static = httpx.get(f"{base}/static/admin/css/base.css", headers=https, timeout=5)
        assert static.status_code == 200
        assert "max-age=31536000" in static.headers.get("strict-transport-security", "")

        sandbox = StripeSandbox(WEBHOOK_SECRET, seed=int(time.time()))
        customer = sandbox.customer("Production Stack Ltd", "ap@prod.example", country="US")
        invoice = sandbox.finalize(sandbox.invoice(customer, [("Seats", 2, 2500)], currency="usd"))
        body, headers = sandbox.webhook_request(sandbox.event("invoice.finalized", invoice))
        answer = httpx.post(f"{base}/api/webhooks/stripe/", content=body, headers={**headers, **https}, timeout=10)
        assert answer.status_code == 200, answer.text
        forged = httpx.post(f"{base}/api/webhooks/stripe/", content=body,
                            headers={**headers, **https, "Stripe-Signature": "t=1,v1=00"}, timeout=10)
        assert forged.status_code == 400

        posted = wait_for(lambda: [i for i in erp.invoices(reference=invoice["id"]) if i["state"] == "posted"],
                          timeout=120, what=f"the invoice in the ERP ({logs['worker'].read_text()[-1500:]})")
        assert len(posted) == 1
        attempts = run([sys.executable, "manage.py", "shell", "-c", (
            "import json; from integration_hub.runtime.models import DeliveryAttempt; "
            "print(json.dumps(list(DeliveryAttempt.objects.filter(delivery__connection__name='tryton')"
            ".order_by('delivery_id', 'number').values('outcome', 'http_status'))))"
        )])
        time.sleep(3)  # a duplicate message would post a second invoice by now
        assert len(erp.invoices(reference=invoice["id"])) == 1
        return env, json.loads(attempts.strip().splitlines()[-1])
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
