"""The performance suite's one runner: ``make bench`` (full) and ``make bench-smoke``.

Every figure is a ratio against a baseline measured in the same run, on the same
PostgreSQL, Redis, server and worker settings, interleaved (baseline, hub, baseline,
hub, ...). It uses the running PostgreSQL and Redis, creates its own databases
(``bench_*``), a dedicated Redis database (/5) and queue (``hub-bench``), starts its
own gunicorn and Celery worker processes and stops them. Load goes to 127.0.0.1 only
and is bounded in count and time.

The orchestrator does not load Django: everything that touches the hub's database
runs in a child process (``python -m benchmarks.run _<step>``) with that database's
``DATABASE_URL``, exactly as the hub's own processes would.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
PYTHON = sys.executable
PG = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/5")
# The Celery broker (--broker): Redis by default, or RabbitMQ (amqp://…, quorum queues).
# The governor's state stays in REDIS either way, so only the broker differs.
BROKER = os.environ.get("BENCH_BROKER", REDIS)
# Database names and the queue start with this, so two runs on one machine can keep apart.
NAMESPACE = os.environ.get("BENCH_NAMESPACE", "bench")
# Finance isolation (--bulk-nice): the bulk side's processes (the usage worker; the catalog
# queues' worker and the release's driver) run at this CPU niceness, the finance worker at 0.
BULK_NICE = 0
QUEUE = f"hub-{NAMESPACE}"
WEBHOOK_SECRET = "whsec_bench_0123456789abcdef"
# Issue 17: the slow ERP carries at least this share of its ceiling, never above its cap.
SLOW_ERP_GOAL = 0.95
SLOW_ERP_PREFIX = f"{NAMESPACE}:slow-erp"
TEMPLATE_DB = f"{NAMESPACE}_template"
ENCRYPTION_KEY = "mT0d8tqH8Y2t7kq4V2b0v5lS3aQ9cX1eR6uY4iO0pWk="  # bench only: a fixed Fernet key
# Issue 17's webhook goals: req/s at least this share of the bare DRF insert, p99 at
# most this multiple of the baseline's.
INGEST_RPS_GOAL = 0.8
INGEST_P99_GOAL = 1.5
# Issue 17: a backlog drains into the real ERP at least this share of the fastest direct method.
BACKLOG_GOAL = 0.9
# The real Tryton of the backlog part runs on this PostgreSQL server (its own databases).
TRYTON_POSTGRES = PG.replace("postgres://", "postgresql://", 1).rstrip("/") + "/"


@dataclass(frozen=True)
class Plan:
    name: str
    pairs: int
    ingest_connections: tuple[int, ...]
    ingest_seconds: float
    ingest_max_requests: int
    pipeline_events: int
    worker_concurrency: int
    slow_docs: int
    slow_latency_ms: int
    slow_cap: int
    slow_worker_concurrency: int
    history_rows: tuple[int, int]
    history_events: int
    sweep_repeats: int
    profile_events: int
    usage_rows: int = 1_000_000
    # The stated size: 2,000 SKUs, 10,000 versions (about 30 minutes on this machine).
    catalog_skus: int = 2_000
    catalog_pairs: int = 1
    reconcile_invoices: int = 100_000
    # Finance isolation: invoice events trickled in at this rate, idle and during a usage load
    # (at least this many, and until the load is over) or a catalog release of ``catalog_skus``
    # (for this many seconds from its start; ``catalog_pairs`` pairs).
    isolation_rate: float = 4.0
    isolation_events: int = 80
    isolation_catalog_seconds: float = 120.0
    # Scale-out: invoice and billing-customer events (half each), one worker vs two.
    scaleout_events: int = 1_000
    # Backlog into the real ERP: invoices held by a maintenance window, drained into Tryton on
    # PostgreSQL in the connector's batches (its default ``batch_size``, sized by the runtime to
    # the pace of the last ones, unless ``hub_batch``); the direct script posts in batches of
    # ``backlog_batch`` and of ``backlog_big_batch``, and one at a time on ``backlog_sequential``
    # of them (at under 1/s, all 500 would take ten minutes more).
    backlog_invoices: int = 500
    backlog_batch: int = 25
    backlog_big_batch: int = 100
    backlog_sequential: int = 60
    hub_batch: int = 0
    hub_timeout: float = 0.0
    backlog_pairs: int = 1


FULL = Plan(
    name="full", pairs=3, ingest_connections=(8, 32), ingest_seconds=6.0, ingest_max_requests=4500,
    pipeline_events=2_000, worker_concurrency=2, slow_docs=120, slow_latency_ms=200, slow_cap=4,
    slow_worker_concurrency=8, history_rows=(1_000, 1_000_000), history_events=600, sweep_repeats=15,
    profile_events=1_000,
)
SMOKE = Plan(
    name="smoke", pairs=1, ingest_connections=(8, 32), ingest_seconds=1.0, ingest_max_requests=200,
    pipeline_events=150, worker_concurrency=2, slow_docs=12, slow_latency_ms=200, slow_cap=4,
    slow_worker_concurrency=8, history_rows=(100, 2_000), history_events=60, sweep_repeats=3,
    profile_events=0, usage_rows=20_000, catalog_skus=8, reconcile_invoices=2_000, isolation_events=12,
    isolation_catalog_seconds=4.0, scaleout_events=60, backlog_invoices=24, backlog_batch=10, backlog_big_batch=24, hub_batch=10,
    backlog_sequential=4,
)

# The figures every run must produce (bench-smoke checks they are all there).
FIGURES = [
    "ingest_rps_c8", "ingest_p99_c8", "ingest_rps_c32", "ingest_p99_c32",
    "pipeline_throughput", "slow_erp_throughput", "slow_erp_peak_concurrency",
    "history_throughput", "sweep_query_ms_small", "sweep_query_ms_large",
    "web_rss_mb", "worker_rss_mb",
    "usage_load_rps", "usage_load_rss_mb", "usage_aggregate_seconds",
    "catalog_full_sync_seconds",
    "reconcile_seconds",
    "finance_p95_under_bulk_ms", "finance_p95_under_catalog_ms", "scaleout_throughput",
    "backlog_drain_rate",
]


def _batch_note(batches: dict) -> str:
    """The batch sizes a backlog run posted in, ``{size: count}``, as "of 25, 81 and 4 × 100"."""
    parts = [f"{count} × {size}" if count > 1 else str(size)
             for size, count in sorted((int(size), count) for size, count in batches.items())]
    return "of " + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0])


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------- environment


def hub_env(database: str, **extra: str) -> dict[str, str]:
    """The environment of every hub process in the run: production mode, our own
    database, Redis db and queue, and the stub ERP package."""
    env = {
        **os.environ,
        "HUB_ENV": "production",
        "SECRET_KEY": "bench-only-secret-key-not-for-production-0123456789",
        "HUB_ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "DATABASE_URL": f"{PG}/{database}",
        "CELERY_BROKER_URL": BROKER,
        "HUB_REDIS_URL": REDIS,  # the governor's state, in our Redis db too
        "HUB_QUEUE": QUEUE,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        # No TLS proxy in front of the measured gunicorn, and the stub ERP is local.
        "HUB_SSL_REDIRECT": "false",
        "HUB_ALLOWED_INTERNAL_HOSTS": "127.0.0.1,localhost",
        "HUB_CONNECTOR_PACKAGES": "connectors.stripe,connectors.tryton,connectors.product_platform,benchmarks.stub_erp",
        "LOG_LEVEL": "INFO",
        "DJANGO_SETTINGS_MODULE": "integration_hub.settings",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
    }
    env.update(extra)
    return env


def child(step: str, database: str, *args: str, capture: bool = False, **env: str) -> str:
    """Run ``python -m benchmarks.run _<step>`` against ``database``; returns stdout."""
    result = subprocess.run(
        [PYTHON, "-m", "benchmarks.run", f"_{step}", *args], cwd=ROOT, env=hub_env(database, **env),
        capture_output=capture, text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"step {step} on {database} failed:\n{(result.stderr or '')[-3000:]}")
    return result.stdout if capture else ""


def pg_admin():
    import psycopg

    return psycopg.connect(f"{PG}/postgres", autocommit=True)


def pg(database: str):
    import psycopg

    return psycopg.connect(f"{PG}/{database}", autocommit=True)


def db_drop(name: str) -> None:
    with pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def db_clone(name: str, template: str = TEMPLATE_DB) -> None:
    db_drop(name)
    with pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')


def redis_client():
    import redis

    return redis.Redis.from_url(REDIS)


def amqp() -> bool:
    return BROKER.startswith(("amqp://", "amqps://", "pyamqp://"))


# The hub's queues under HUB_QUEUE=QUEUE: the default one and one per workflow class.
QUEUES = {queue_class: f"{QUEUE}-{queue_class}" for queue_class in ("finance", "customer", "catalog", "usage")}


def _amqp_queues() -> list[str]:
    return [QUEUE, *QUEUES.values()]


def queue_purge() -> None:
    if amqp():
        from kombu import Connection

        with Connection(BROKER) as connection:
            for name in _amqp_queues():
                connection.default_channel.queue_delete(name)
    client = redis_client()
    # The governor's per-connection state lives here too (HUB_REDIS_URL defaults to the
    # broker): every run starts with closed circuits and free slots.
    keys = [*client.keys(f"{QUEUE}*"), *client.keys("hub:governor:*"), *client.keys("bench:*"),
            b"unacked", b"unacked_index", b"unacked_mutex"]
    client.delete(*keys)


def queue_depth() -> int:
    if amqp():
        # Ready messages only (AMQP does not count the unacknowledged ones): the last
        # few tasks still running when it reaches 0 are not timed.
        from amqp.exceptions import NotFound
        from kombu import Connection

        depth = 0
        with Connection(BROKER) as connection:
            for name in _amqp_queues():
                try:
                    depth += connection.channel().queue_declare(name, passive=True).message_count
                except NotFound:
                    pass
        return depth
    client = redis_client()
    return sum(client.llen(key) for key in client.keys(f"{QUEUE}*") if client.type(key) == b"list") + client.hlen(
        "unacked"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------- processes and memory


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def process_tree(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*") if Path(f"/proc/{current}").exists() else []:
            with contextlib.suppress(OSError):
                stack.extend(int(c) for c in (task / "children").read_text().split())
    return found


class RssSampler:
    """Samples the resident memory of a process tree; ``peak`` is the largest single
    process (a gunicorn or Celery child), ``peak_total`` the whole tree."""

    def __init__(self, pid: int, interval: float = 0.25):
        self.pid, self.interval = pid, interval
        self.peak = self.peak_total = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            sizes = [rss_mb(p) for p in process_tree(self.pid)]
            if sizes:
                self.peak = max(self.peak, max(sizes))
                self.peak_total = max(self.peak_total, sum(sizes))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _niced(nice: int) -> list[str]:
    return ["nice", "-n", str(nice)] if nice else []


def _worker_start(database: str, concurrency: int, logdir: Path, tag: str, queues: str,
                  nice: int = 0) -> subprocess.Popen:
    with (logdir / f"worker-{tag}.log").open("w") as log_file:
        return subprocess.Popen(
            [*_niced(nice), PYTHON, "-m", "celery", "-A", "integration_hub", "worker",
             *(["-Q", queues] if queues else []),
             "-c", str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO",
             "-n", f"bench-{os.getpid()}-{tag}@%h"],
            cwd=ROOT, env=hub_env(database), stdout=log_file, stderr=subprocess.STDOUT,
        )


@contextlib.contextmanager
def workers(database: str, specs: list[tuple], logdir: Path
            ) -> Iterator[tuple[float, dict[str, subprocess.Popen]]]:
    """Celery workers on ``database``, one per (tag, concurrency, queues[, niceness]) — queues
    "" for every hub queue, as a worker without -Q — started together; yields the moment the
    first one was ready (timing from it gives the others no head start) and the processes."""
    processes = {tag: _worker_start(database, concurrency, logdir, tag, queues, *nice)
                 for tag, concurrency, queues, *nice in specs}
    try:
        first, waiting, deadline = 0.0, set(processes), time.monotonic() + 60
        while waiting:
            for tag in sorted(waiting):
                if "ready." in (logdir / f"worker-{tag}.log").read_text():
                    waiting.discard(tag)
                    first = first or time.perf_counter()
                elif processes[tag].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the worker did not start:\n{(logdir / f'worker-{tag}.log').read_text()[-3000:]}")
            time.sleep(0.02)
        yield first, processes
    finally:
        for process in processes.values():
            stop(process)


@contextlib.contextmanager
def worker(database: str, concurrency: int, logdir: Path, tag: str, queues: str = "") -> Iterator[subprocess.Popen]:
    """A Celery worker on our queues (all of them unless ``queues``) and ``database``;
    yields once it is ready."""
    with workers(database, [(tag, concurrency, queues)], logdir) as (_, processes):
        yield processes[tag]


@contextlib.contextmanager
def gunicorn(database: str, logdir: Path) -> Iterator[tuple[subprocess.Popen, int]]:
    port = free_port()
    log_path = logdir / "gunicorn.log"
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            [str(Path(PYTHON).parent / "gunicorn"), "benchmarks.wsgi:application", "--workers", "2",
             "--worker-class", "sync", "--bind", f"127.0.0.1:{port}", "--backlog", "2048", "--timeout", "60"],
            cwd=ROOT, env=hub_env(database, DJANGO_SETTINGS_MODULE="benchmarks.settings"),
            stdout=log_file, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.1)
            yield process, port
        finally:
            stop(process)


def _nice_note() -> str:
    return f"; the bulk processes at niceness {BULK_NICE} (--bulk-nice)" if BULK_NICE else ""


# --------------------------------------------------------------------- statistics


def summary(values: list[float]) -> dict[str, float]:
    """Median and spread ((max - min) / median) of a figure's runs."""
    median = statistics.median(values)
    spread = (max(values) - min(values)) / median if median else 0.0
    return {"median": median, "min": min(values), "max": max(values), "spread": spread, "runs": values}


def interleave(pairs: int, baseline: Callable[[int], float], hub: Callable[[int], float]) -> tuple[list, list]:
    base_runs, hub_runs = [], []
    for i in range(pairs):
        base_runs.append(baseline(i))
        hub_runs.append(hub(i))
    return base_runs, hub_runs


# --------------------------------------------------------------------- the figures


class Suite:
    def __init__(self, plan: Plan, logdir: Path):
        self.plan = plan
        self.logdir = logdir
        self.figures: dict[str, dict] = {}
        self.extra: dict[str, object] = {}
        self.seed = 1000

    def next_seed(self) -> int:
        self.seed += 1
        return self.seed

    def figure(self, key: str, *, title: str, unit: str, hub: list[float], baseline: list[float] | None,
               goal: str, met: bool | None, higher_is_better: bool = True, note: str = "") -> None:
        hub_s = summary(hub)
        base_s = summary(baseline) if baseline else None
        ratio = hub_s["median"] / base_s["median"] if base_s and base_s["median"] else None
        self.figures[key] = {
            "title": title, "unit": unit, "hub": hub_s, "baseline": base_s, "ratio": ratio,
            "goal": goal, "met": met, "higher_is_better": higher_is_better, "note": note,
        }
        shown = f"{hub_s['median']:.1f} {unit}" + (f" vs {base_s['median']:.1f} (ratio {ratio:.2f})" if base_s else "")
        log(f"  {title}: {shown} — goal {goal}: {'met' if met else ('pending' if met is None else 'NOT met')}")

    # -- setup ---------------------------------------------------------------

    def setup_template(self) -> None:
        log("creating the template database (migrations, connections, legal entities)")
        db_drop(TEMPLATE_DB)
        with pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, check=True,
            env=hub_env(TEMPLATE_DB, DJANGO_SETTINGS_MODULE="benchmarks.settings"),
        )
        child("setup", TEMPLATE_DB)

    def feed(self, database: str, events: int, *, customers: int = 0) -> float:
        """Accept ``events`` distinct invoice events (and ``customers`` billing-customer
        events) into the inbox through ``inbound_accept`` (two feeder processes); returns
        seconds taken."""
        start = time.perf_counter()
        parts = 2 if events >= 200 else 1
        seed = self.next_seed()
        procs = [
            subprocess.Popen(
                [PYTHON, "-m", "benchmarks.run", "_feed", "--events", str(events // parts + (i < events % parts)),
                 "--customers", str(customers // parts + (i < customers % parts)), "--seed", str(seed * 10 + i)],
                cwd=ROOT, env=hub_env(database),
            )
            for i in range(parts)
        ]
        for proc in procs:
            if proc.wait() != 0:
                raise RuntimeError("a feeder failed")
        return time.perf_counter() - start

    # -- webhook ingest --------------------------------------------------------

    def ingest(self) -> None:
        from benchmarks.loadgen import build_request, run_load
        from connectors.stripe.sandbox import StripeSandbox

        plan = self.plan
        log("webhook ingest: gunicorn, 2 sync workers; hub = /api/webhooks/stripe/, baseline = bare DRF insert")
        db_clone(f"{NAMESPACE}_ingest")
        sandbox = StripeSandbox(WEBHOOK_SECRET, seed=self.next_seed())
        customers = [sandbox.customer(f"Customer {i}", f"c{i}@example.com") for i in range(50)]

        def requests(port: int, path: str, count: int, signed: bool) -> list[bytes]:
            built = []
            for i in range(count):
                invoice = sandbox.finalize(sandbox.invoice(customers[i % 50], [("Seats", 1 + i % 5, 2500)]))
                body, headers = sandbox.webhook_request(sandbox.event("invoice.finalized", invoice))
                if not signed:
                    headers = {"Content-Type": "application/json"}
                built.append(build_request(port, path, body, headers))
            return built

        web_rss = {"hub": [], "baseline": []}
        with gunicorn(f"{NAMESPACE}_ingest", self.logdir) as (server, port):
            for path, signed in (("/bench/baseline/", False), ("/api/webhooks/stripe/", True)):
                warm = run_load(port, requests(port, path, 40, signed), connections=4, duration=10)
                if warm.errors:
                    raise RuntimeError(f"warm-up of {path} failed: {warm.statuses}; see {self.logdir}/gunicorn.log")
            for connections in plan.ingest_connections:
                results: dict[str, list] = {"hub": [], "baseline": []}

                def one(kind: str, connections: int = connections, results=results) -> float:
                    path, signed = ("/api/webhooks/stripe/", True) if kind == "hub" else ("/bench/baseline/", False)
                    batch = requests(port, path, plan.ingest_max_requests, signed)
                    with RssSampler(server.pid) as rss:
                        result = run_load(port, batch, connections=connections, duration=plan.ingest_seconds)
                    if result.errors:
                        raise RuntimeError(f"{kind} ingest had errors: {result.statuses} ({result.errors})")
                    web_rss[kind].append(rss.peak)
                    results[kind].append(result)
                    log(f"  {kind:8} c={connections}: {result.rps:7.1f} req/s  p50 {result.percentile(50)*1000:6.1f} ms"
                        f"  p99 {result.percentile(99)*1000:6.1f} ms  ({result.ok} requests)")
                    return result.rps

                base_rps, hub_rps = interleave(plan.pairs, lambda i: one("baseline"), lambda i: one("hub"))
                hub_p99 = [r.percentile(99) * 1000 for r in results["hub"]]
                base_p99 = [r.percentile(99) * 1000 for r in results["baseline"]]
                rps_ratio = statistics.median(hub_rps) / statistics.median(base_rps)
                p99_ratio = statistics.median(hub_p99) / statistics.median(base_p99)
                self.figure(f"ingest_rps_c{connections}", title=f"Webhook ingest, {connections} connections",
                            unit="req/s", hub=hub_rps, baseline=base_rps, goal=f"ratio ≥ {INGEST_RPS_GOAL}",
                            met=rps_ratio >= INGEST_RPS_GOAL)
                self.figure(f"ingest_p99_c{connections}", title=f"Webhook p99 latency, {connections} connections",
                            unit="ms", hub=hub_p99, baseline=base_p99, goal=f"≤ {INGEST_P99_GOAL} × baseline",
                            met=p99_ratio <= INGEST_P99_GOAL,
                            higher_is_better=False)
        self.extra["web_rss"] = web_rss
        queue_purge()
        db_drop(f"{NAMESPACE}_ingest")

    # -- pipeline --------------------------------------------------------------

    def hub_pipeline(self, database: str, events: int, *, concurrency: int, tag: str,
                     fresh: bool = True, profile: Path | None = None, timeout: float = 900) -> dict:
        """Feed ``events`` into the inbox with no worker running, then start one worker
        and time it from ready until every delivery is posted."""
        if fresh:
            db_clone(database)
        queue_purge()
        # Only rows above these marks are this run's: polling must not scan the history.
        with pg(database) as conn:
            mark, inbound_mark, attempt_mark = conn.execute(
                "SELECT (SELECT coalesce(max(id), 0) FROM runtime_delivery),"
                " (SELECT coalesce(max(id), 0) FROM runtime_inboundevent),"
                " (SELECT coalesce(max(id), 0) FROM runtime_deliveryattempt)"
            ).fetchone()
        feed_seconds = self.feed(database, events)
        with worker(database, concurrency, self.logdir, tag) as proc, RssSampler(proc.pid) as rss:
            spy = None
            if profile is not None:
                spy = subprocess.Popen(
                    [str(Path(PYTHON).parent / "py-spy"), "record", "--pid", str(proc.pid), "--subprocesses",
                     "--rate", "200", "--format", "raw", "--output", str(profile), "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                time.sleep(1.0)  # let py-spy attach before the clock starts
            start = time.perf_counter()
            deadline = start + timeout
            with pg(database) as conn:
                while True:
                    done, failed = conn.execute(
                        "SELECT count(*) FILTER (WHERE status = 'posted'), count(*) FILTER (WHERE status = 'dead')"
                        " FROM runtime_delivery WHERE id > %s", [mark]
                    ).fetchone()
                    if done >= events:
                        break
                    if failed or time.perf_counter() > deadline:
                        raise RuntimeError(f"pipeline stalled: {done}/{events} posted, {failed} dead")
                    time.sleep(0.05)
            elapsed = time.perf_counter() - start
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
        with pg(database) as conn:
            outcomes = dict(conn.execute("SELECT outcome, count(*) FROM runtime_deliveryattempt"
                                         " WHERE id > %s GROUP BY 1", [attempt_mark]).fetchall())
            inbound_window, delivery_window = conn.execute(
                "SELECT (SELECT extract(epoch FROM max(processed_at) - min(processed_at)) FROM runtime_inboundevent"
                "        WHERE id > %s),"
                "       (SELECT extract(epoch FROM max(updated_at) - min(claimed_at)) FROM runtime_delivery"
                "        WHERE status = 'posted' AND id > %s)", [inbound_mark, mark]
            ).fetchone()
        return {"events": events, "elapsed": elapsed, "rate": events / elapsed, "feed_seconds": feed_seconds,
                "attempt_outcomes": outcomes, "inbound_phase_s": float(inbound_window or 0),
                "delivery_phase_s": float(delivery_window or 0),
                "feed_rate": events / feed_seconds, "worker_rss_peak": rss.peak, "worker_rss_total": rss.peak_total}

    def noop_pipeline(self, tasks: int, *, concurrency: int, tag: str) -> dict:
        queue_purge()
        child("noop_send", TEMPLATE_DB, "--tasks", str(tasks))
        with worker(TEMPLATE_DB, concurrency, self.logdir, tag) as proc, RssSampler(proc.pid) as rss:
            start = time.perf_counter()
            while queue_depth() > 0:
                if time.perf_counter() - start > 600:
                    raise RuntimeError("no-op tasks did not drain")
                time.sleep(0.02)
            elapsed = time.perf_counter() - start
        return {"tasks": tasks, "elapsed": elapsed, "rate": tasks / elapsed, "worker_rss_peak": rss.peak}

    def pipeline(self) -> None:
        plan = self.plan
        log(f"pipeline: {plan.pipeline_events} invoice events inbox → posted, one worker -c {plan.worker_concurrency},"
            f" vs {plan.pipeline_events} no-op tasks")
        runs = {"hub": [], "baseline": []}

        def base(i: int) -> float:
            result = self.noop_pipeline(plan.pipeline_events, concurrency=plan.worker_concurrency, tag=f"noop{i}")
            runs["baseline"].append(result)
            log(f"  no-op    : {result['rate']:7.1f} tasks/s  ({result['elapsed']:.1f} s)")
            return result["rate"]

        def hub(i: int) -> float:
            result = self.hub_pipeline(f"{NAMESPACE}_pipeline", plan.pipeline_events,
                                       concurrency=plan.worker_concurrency, tag=f"pipe{i}")
            runs["hub"].append(result)
            log(f"  hub      : {result['rate']:7.1f} events/s ({result['elapsed']:.1f} s; fed at"
                f" {result['feed_rate']:.0f}/s)")
            return result["rate"]

        base_rates, hub_rates = interleave(plan.pairs, base, hub)
        ratio = statistics.median(hub_rates) / statistics.median(base_rates)
        self.figure("pipeline_throughput", title="Pipeline, invoice events posted per s (instant ERP)",
                    unit="/s", hub=hub_rates, baseline=base_rates, goal="ratio ≥ 0.3", met=ratio >= 0.3,
                    note="hub: events from inbox to posted (one task each: the delivery runs inline); baseline: no-op tasks")
        self.extra["pipeline_runs"] = runs
        db_drop(f"{NAMESPACE}_pipeline")

    # -- slow ERP --------------------------------------------------------------

    def slow_erp(self) -> None:
        from benchmarks.stub_erp.connector import SlowErpCounters

        plan = self.plan
        cap, latency = plan.slow_cap, plan.slow_latency_ms
        ceiling = cap * 1000 / latency
        log(f"slow ERP: {latency} ms per call, at most {cap} at once (≤ {ceiling:.0f} documents/s);"
            f" worker -c {plan.slow_worker_concurrency}")
        counters = SlowErpCounters(REDIS, SLOW_ERP_PREFIX)
        runs: dict[str, list] = {"hub": [], "baseline": []}

        def base(i: int) -> float:
            counters.reset()
            todo = iter(range(plan.slow_docs))
            lock = threading.Lock()

            def client() -> None:
                while True:
                    with lock:
                        n = next(todo, None)
                    if n is None:
                        return
                    counters.call(f"base-{i}-{n}", latency=latency / 1000, limit=cap)

            start = time.perf_counter()
            threads = [threading.Thread(target=client) for _ in range(cap)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            rate = plan.slow_docs / (time.perf_counter() - start)
            runs["baseline"].append({"rate": rate, **counters.read()})
            log(f"  baseline : {rate:5.1f} docs/s (a client holding exactly {cap} calls open)")
            return rate

        def hub(i: int) -> float:
            counters.reset()
            db_clone(f"{NAMESPACE}_slow")
            policy = child("slow_erp_setup", f"{NAMESPACE}_slow", "--latency-ms", str(latency), "--cap", str(cap),
                           capture=True).strip()
            result = self.hub_pipeline(f"{NAMESPACE}_slow", plan.slow_docs, concurrency=plan.slow_worker_concurrency,
                                       tag=f"slow{i}", fresh=False, timeout=300)
            with pg(f"{NAMESPACE}_slow") as conn:
                first, last, refused_attempts = conn.execute(
                    "SELECT min(started_at) FILTER (WHERE outcome = 'posted' OR outcome = 'rate_limited'),"
                    " max(started_at + duration_ms * interval '1 millisecond') FILTER (WHERE outcome = 'posted'),"
                    " count(*) FILTER (WHERE outcome <> 'posted') FROM runtime_deliveryattempt"
                ).fetchone()
            rate = plan.slow_docs / (last - first).total_seconds()
            counts = counters.read()
            counts["held"] = (self.logdir / f"worker-slow{i}.log").read_text().count('"delivery_held"')
            runs["hub"].append({"rate": rate, "policy": policy, "failed_attempts": refused_attempts, **counts,
                                "end_to_end_rate": result["rate"]})
            log(f"  hub      : {rate:5.1f} docs/s, peak {counts['peak']} concurrent calls, {counts['refused']} refused,"
                f" {counts['held']} holds"
                f" (governor: {policy})")
            return rate

        base_rates, hub_rates = interleave(plan.pairs, base, hub)
        peaks = [float(run["peak"]) for run in runs["hub"]]
        governed = all(run["policy"].startswith("max_concurrency") for run in runs["hub"])
        ratio = statistics.median(hub_rates) / ceiling
        within_cap = max(peaks) <= cap
        met = (ratio >= SLOW_ERP_GOAL and within_cap) if governed else None
        note = "" if governed else "pending the governor: no per-connection concurrency cap in the runtime yet"
        self.figure("slow_erp_throughput", title=f"Slow ERP ({latency} ms, cap {cap}), documents/s",
                    unit="docs/s", hub=hub_rates, baseline=base_rates,
                    goal=f"≥ {SLOW_ERP_GOAL} × {ceiling:.0f}/s, never above the cap", met=met, note=note)
        self.figures["slow_erp_throughput"]["ratio_to_ceiling"] = ratio
        self.figure("slow_erp_peak_concurrency", title="Slow ERP, peak concurrent calls arriving",
                    unit="calls", hub=peaks, baseline=[float(r["peak"]) for r in runs["baseline"]],
                    goal=f"≤ {cap}", met=within_cap if governed else None, higher_is_better=False, note=note)
        self.extra["slow_erp_runs"] = runs
        db_drop(f"{NAMESPACE}_slow")

    # -- history -----------------------------------------------------------------

    def history(self) -> None:
        plan = self.plan
        small, large = plan.history_rows
        log(f"history: {small:,} vs {large:,} finished deliveries and inbox rows already in the tables")
        dbs = {"small": f"{NAMESPACE}_hist_small", "large": f"{NAMESPACE}_hist_large"}
        for key, rows in (("small", small), ("large", large)):
            db_clone(dbs[key])
            start = time.perf_counter()
            child("load_history", dbs[key], "--rows", str(rows))
            log(f"  loaded {rows:,} rows of history into {dbs[key]} in {time.perf_counter() - start:.1f} s")

        sweeps: dict[str, list[float]] = {"small": [], "large": []}
        plans: dict[str, str] = {}
        for _ in range(plan.pairs):
            for key in ("small", "large"):
                out = json.loads(child("sweep", dbs[key], "--repeat", str(plan.sweep_repeats), capture=True))
                sweeps[key].append(out["median_ms"])
                plans[key] = out["explain"]
        for key in ("small", "large"):
            self.figure(f"sweep_query_ms_{key}", title=f"Sweeper pass with {plan.history_rows[key == 'large']:,} rows",
                        unit="ms", hub=sweeps[key], baseline=None, goal="< 50 ms",
                        met=max(sweeps[key]) < 50, higher_is_better=False)
        self.extra["sweep_plans"] = plans

        runs: dict[str, list] = {"small": [], "large": []}

        def one(key: str) -> float:
            marks = json.loads(child("history_marks", dbs[key], capture=True))
            result = self.hub_pipeline(dbs[key], plan.history_events, concurrency=plan.worker_concurrency,
                                       tag=f"hist-{key}", fresh=False)
            child("history_trim", dbs[key], "--marks", json.dumps(marks))
            runs[key].append(result)
            log(f"  {key:5} history: {result['rate']:7.1f} events/s")
            return result["rate"]

        small_rates, large_rates = interleave(plan.pairs, lambda i: one("small"), lambda i: one("large"))
        ratio = statistics.median(large_rates) / statistics.median(small_rates)
        self.figure("history_throughput", title=f"Pipeline with {large:,} vs {small:,} rows of history",
                    unit="/s", hub=large_rates, baseline=small_rates, goal="within 20 % (ratio ≥ 0.8)",
                    met=ratio >= 0.8, note="baseline here is the same hub with a small history")
        for name in dbs.values():
            db_drop(name)

    # -- usage loads -------------------------------------------------------------------

    def usage(self) -> None:
        """A CSV of ``usage_rows`` records loaded by ``manage.py usage_load`` (parse, COPY into
        the stage, one INSERT … ON CONFLICT into the partitioned table, counts) against a raw
        psycopg COPY of the same file into a table with the same unique key, interleaved;
        then the period's aggregation over the loaded rows."""
        import psycopg

        rows = self.plan.usage_rows
        path = self.usage_file()
        database = f"{NAMESPACE}_usage"
        timings: dict[str, list[float]] = {"rss": [], "aggregate": []}

        def base(i: int) -> float:
            db_clone(database)
            try:
                with psycopg.connect(f"{PG}/{database}") as conn, path.open("rb") as stream:
                    conn.execute("CREATE TABLE usage_baseline (id text PRIMARY KEY, subscription text, metric text, "
                                 "quantity text, timestamp text, region text)")
                    start = time.perf_counter()
                    with conn.cursor().copy("COPY usage_baseline FROM STDIN (FORMAT csv, HEADER)") as copy:
                        while chunk := stream.read(1 << 20):
                            copy.write(chunk)
                    conn.commit()
                    return rows / (time.perf_counter() - start)
            finally:
                db_drop(database)

        def hub(i: int) -> float:
            db_clone(database)
            try:
                child("usage_setup", database)
                start = time.perf_counter()
                proc = subprocess.Popen([PYTHON, "manage.py", "usage_load", str(path)], cwd=ROOT,
                                        env=hub_env(database), stdout=subprocess.DEVNULL,
                                        stderr=(self.logdir / f"usage-load-{i}.log").open("w"))
                with RssSampler(proc.pid) as rss:
                    if proc.wait() != 0:
                        raise RuntimeError("usage_load failed")
                rate = rows / (time.perf_counter() - start)
                timings["rss"].append(rss.peak)
                timings["aggregate"].append(float(child("usage_aggregate", database, capture=True).strip()))
                return rate
            finally:
                db_drop(database)

        base_runs, hub_runs = interleave(self.plan.pairs, base, hub)
        ratio = statistics.median(hub_runs) / statistics.median(base_runs)
        self.figure("usage_load_rps", title=f"Usage load, {rows:,} CSV records (records/s)", unit="records/s",
                    hub=hub_runs, baseline=base_runs, goal="≥ 0.5 × raw COPY", met=ratio >= 0.5,
                    note="baseline: psycopg COPY of the same file into a table with the same unique key")
        self.figure("usage_load_rss_mb", title="usage_load process RSS while loading", unit="MB",
                    hub=timings["rss"], baseline=None, goal="< 300 MB", met=max(timings["rss"]) < 300,
                    higher_is_better=False)
        self.figure("usage_aggregate_seconds", title=f"Aggregation of the period over {rows:,} records",
                    unit="s", hub=timings["aggregate"], baseline=None, goal="< 5 s (1,000,000 records)",
                    met=max(timings["aggregate"]) < 5 if rows >= 1_000_000 else None, higher_is_better=False)

    def usage_file(self) -> Path:
        """The CSV of ``usage_rows`` records (for 500 subscriptions), written once a run."""
        rows, path = self.plan.usage_rows, self.logdir / "usage.csv"
        if path.exists():
            return path
        log(f"usage: writing {rows:,} records to {path}")
        with path.open("w") as out:
            out.write("id,subscription,metric,quantity,timestamp,region\n")
            for n in range(rows):
                out.write(f"ev-{n:09d},sub_{n % 500},{('api_calls', 'storage_gb', 'seats')[n % 3]},"
                          f"{n % 97}.{n % 1000:03d},2025-01-{1 + n % 28:02d}T{n % 24:02d}:00:00Z,eu-{n % 4}\n")
        return path

    # -- finance isolation ---------------------------------------------------------

    def isolation_run(self, database: str, *, bulk: bool, events: int, tag: str) -> dict:
        """Invoice events accepted one by one at ``isolation_rate`` into a hub with a finance
        worker (-Q finance) and a bulk worker (-Q usage); with ``bulk``, a usage file is
        received (queued for the bulk worker) just before, and events keep coming until
        its load is over. Latency: accepted (the inbox row) → delivery posted."""
        plan = self.plan
        db_clone(database)
        queue_purge()
        child("usage_setup", database)
        specs = [(f"{tag}-finance", plan.worker_concurrency, QUEUES["finance"]),
                 (f"{tag}-usage", 1, QUEUES["usage"], BULK_NICE)]
        with workers(database, specs, self.logdir):
            if bulk:
                child("usage_receive", database, "--path", str(self.usage_file()))
            out = child("trickle", database, "--events", str(events), "--rate", str(plan.isolation_rate),
                        "--seed", str(self.next_seed()), *(["--while-loading"] if bulk else []), capture=True)
            accepted, load_seconds = json.loads(out.strip().splitlines()[-1])
            latencies = self.invoice_latencies(database, accepted, tag)
        db_drop(database)
        return {"events": accepted, "p95_ms": statistics.quantiles(latencies, n=100)[94],
                "p50_ms": statistics.median(latencies), "load_seconds": load_seconds,
                "load_average": os.getloadavg()[0]}

    def invoice_latencies(self, database: str, accepted: int, tag: str) -> list[float]:
        """Once the ``accepted`` invoice events' deliveries are posted, each one's latency in
        ms: inbox row → delivery posted (catalog releases, which also start from an inbox
        row, left out)."""
        invoices = ("FROM runtime_delivery d JOIN runtime_inboundevent e ON e.transaction_id = d.transaction_id"
                    " WHERE d.status = 'posted' AND e.source = 'stripe' AND left(d.action, 8) <> 'catalog.'")
        deadline = time.monotonic() + 300
        with pg(database) as conn:
            while conn.execute(f"SELECT count(*) {invoices}").fetchone()[0] < accepted:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"isolation run {tag} stalled; see {self.logdir}/worker-{tag}-*.log")
                time.sleep(0.1)
            return [float(ms) for (ms,) in conn.execute(
                f"SELECT extract(epoch FROM d.updated_at - e.received_at) * 1000 {invoices}").fetchall()]

    def catalog_isolation_run(self, database: str, *, bulk: bool, tag: str) -> dict:
        """Invoice events accepted one by one at ``isolation_rate`` for
        ``isolation_catalog_seconds`` into a hub laid out as docker-compose.yml: a finance
        worker (-Q finance) and a worker for the default, customer and catalog queues. With
        ``bulk``, a catalog release of ``catalog_skus`` SKUs starts as the trickle does: the
        full pull done first (not timed), then the bulk approval, each approved version's
        release deliveries going to the catalog queue at once, into the instant ERP and the
        Stripe API sandbox. Idle: the same connections and sandboxes, nothing pulled. The
        trickle covers the release's first seconds (the whole of a 2,000-SKU one takes
        about 25 minutes), not its end."""
        plan = self.plan
        db_clone(database)
        queue_purge()
        events = max(2, round(plan.isolation_rate * plan.isolation_catalog_seconds))
        with (self.logdir / f"catalog-release-{tag}.log").open("w") as log_file:
            release = subprocess.Popen(
                [*_niced(BULK_NICE), PYTHON, "-m", "benchmarks.run", "_catalog_release", "--events", str(plan.catalog_skus if bulk else 0)],
                cwd=ROOT, env=hub_env(database), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file,
                text=True)
        rest = ",".join([QUEUE, QUEUES["customer"], QUEUES["catalog"]])
        specs = [(f"{tag}-finance", plan.worker_concurrency, QUEUES["finance"]),
                 (f"{tag}-rest", plan.worker_concurrency, rest, BULK_NICE)]
        try:
            self._expect(release, "connected", tag)
            with workers(database, specs, self.logdir):
                release.stdin.write("go\n")
                release.stdin.flush()
                self._expect(release, "releasing", tag)  # pulled: the approval, and so the release, starts now
                out = child("trickle", database, "--events", str(events), "--rate", str(plan.isolation_rate),
                            "--seed", str(self.next_seed()), capture=True)
                accepted, _ = json.loads(out.strip().splitlines()[-1])
                with pg(database) as conn:  # how far the release got while the invoices came in
                    released, planned = conn.execute(
                        "SELECT count(*) FILTER (WHERE status = 'posted'), count(*) FROM runtime_delivery"
                        " WHERE left(action, 8) = 'catalog.'").fetchone()
                latencies = self.invoice_latencies(database, accepted, tag)
        finally:
            stop(release)
        db_drop(database)
        return {"events": accepted, "p95_ms": statistics.quantiles(latencies, n=100)[94],
                "p50_ms": statistics.median(latencies), "catalog_deliveries_posted": released,
                "catalog_deliveries_planned": planned, "load_average": os.getloadavg()[0]}

    def _expect(self, process: subprocess.Popen, marker: str, tag: str) -> None:
        """Wait for ``marker`` on the release driver's stdout (it prints nothing else)."""
        line = process.stdout.readline().strip()
        if line != marker:
            process.wait(timeout=30)
            raise RuntimeError(f"the catalog release driver ({tag}) said {line!r}, not {marker!r}:\n"
                               f"{(self.logdir / f'catalog-release-{tag}.log').read_text()[-3000:]}")

    def isolation(self) -> None:
        plan = self.plan
        log(f"finance isolation: invoice events at {plan.isolation_rate}/s, accepted → posted, idle vs during a"
            f" {plan.usage_rows:,}-row usage load; finance worker -c {plan.worker_concurrency} on its own queue,"
            " usage worker -c 1")
        runs: dict[str, list] = {"idle": [], "bulk": []}

        def bulk(i: int) -> float:
            result = self.isolation_run(f"{NAMESPACE}_isolation", bulk=True, events=plan.isolation_events,
                                        tag=f"iso-bulk{i}")
            runs["bulk"].append(result)
            log(f"  under bulk: p95 {result['p95_ms']:6.0f} ms, p50 {result['p50_ms']:5.0f} ms ({result['events']}"
                f" events over a {result['load_seconds']:.0f} s load)")
            return result["p95_ms"]

        def idle(i: int) -> float:
            # As many events as the bulk run took, so both spread over the same time.
            result = self.isolation_run(f"{NAMESPACE}_isolation", bulk=False, events=runs["bulk"][-1]["events"],
                                        tag=f"iso-idle{i}")
            runs["idle"].append(result)
            log(f"  idle      : p95 {result['p95_ms']:6.0f} ms, p50 {result['p50_ms']:5.0f} ms")
            return result["p95_ms"]

        bulk_p95, idle_p95 = [], []
        for i in range(plan.pairs):  # the bulk run first: it sets the idle run's count
            bulk_p95.append(bulk(i))
            idle_p95.append(idle(i))
        ratio = statistics.median(bulk_p95) / statistics.median(idle_p95)
        loads = [run["load_average"] for run in runs["bulk"] + runs["idle"]]
        self.figure("finance_p95_under_bulk_ms", title="Invoice posting p95, accepted → posted, during a usage load",
                    unit="ms", hub=bulk_p95, baseline=idle_p95, goal="≤ 1.5 × idle", met=ratio <= 1.5,
                    higher_is_better=False,
                    note=f"baseline: the same hub idle; {plan.usage_rows:,}-row usage load on the usage worker"
                         f" (-Q usage, -c 1), invoices on the finance worker (-Q finance, -c {plan.worker_concurrency})"
                         f", instant ERP{_nice_note()}; load average {statistics.median(loads):.1f} on"
                         f" {os.cpu_count()} cores")
        self.extra["isolation_runs"] = runs
        self.isolation_catalog()

    def isolation_catalog(self) -> None:
        plan = self.plan
        log(f"finance isolation: invoice events at {plan.isolation_rate}/s for {plan.isolation_catalog_seconds:.0f} s,"
            f" idle vs during a {plan.catalog_skus:,}-SKU catalog release; finance worker -c {plan.worker_concurrency}"
            f" on its own queue, the default, customer and catalog queues' worker -c {plan.worker_concurrency}")
        runs: dict[str, list] = {"idle": [], "bulk": []}

        def one(key: str, i: int) -> float:
            result = self.catalog_isolation_run(f"{NAMESPACE}_isolation", bulk=key == "bulk", tag=f"iso-cat-{key}{i}")
            runs[key].append(result)
            log(f"  {'release' if key == 'bulk' else 'idle':9} : p95 {result['p95_ms']:6.0f} ms, p50"
                f" {result['p50_ms']:5.0f} ms ({result['events']} events; catalog deliveries posted meanwhile"
                f" {result['catalog_deliveries_posted']:,} of {result['catalog_deliveries_planned']:,} planned)")
            return result["p95_ms"]

        bulk_p95, idle_p95 = [], []
        for i in range(plan.catalog_pairs):
            bulk_p95.append(one("bulk", i))
            idle_p95.append(one("idle", i))
        ratio = statistics.median(bulk_p95) / statistics.median(idle_p95)
        loads = [run["load_average"] for run in runs["bulk"] + runs["idle"]]
        posted = statistics.median(run["catalog_deliveries_posted"] for run in runs["bulk"])
        self.figure("finance_p95_under_catalog_ms",
                    title="Invoice posting p95, accepted → posted, during a catalog release", unit="ms",
                    hub=bulk_p95, baseline=idle_p95, goal="≤ 1.5 × idle", met=ratio <= 1.5, higher_is_better=False,
                    note=f"baseline: the same hub idle; the first {plan.isolation_catalog_seconds:.0f} s of a"
                         f" {plan.catalog_skus:,}-SKU release ({plan.catalog_skus * 5:,} versions approved in bulk,"
                         f" {posted:,.0f} catalog deliveries posted meanwhile) on the worker of the default, customer"
                         f" and catalog queues (-c {plan.worker_concurrency}), invoices on the finance worker (-Q"
                         f" finance, -c {plan.worker_concurrency}), instant ERP, Stripe API sandbox{_nice_note()};"
                         " load average"
                         f" {statistics.median(loads):.1f} on {os.cpu_count()} cores")
        self.extra["isolation_catalog_runs"] = runs

    # -- scale-out --------------------------------------------------------------------

    def scaleout_run(self, database: str, *, split: bool, tag: str) -> dict:
        """``scaleout_events`` (invoice and billing-customer events, half each) fed into the
        inbox, then one worker on every queue, or two started together — finance, and the
        rest (default, customer, catalog, usage) — timed until every event is processed
        and every invoice posted."""
        plan = self.plan
        invoices = plan.scaleout_events // 2
        db_clone(database)
        queue_purge()
        self.feed(database, invoices, customers=plan.scaleout_events - invoices)
        rest = ",".join([QUEUE, *(name for key, name in QUEUES.items() if key != "finance")])
        specs = ([(f"{tag}-finance", plan.worker_concurrency, QUEUES["finance"]),
                  (f"{tag}-rest", plan.worker_concurrency, rest)] if split
                 else [(tag, plan.worker_concurrency, "")])
        with workers(database, specs, self.logdir) as (start, _), pg(database) as conn:
            deadline = start + 600
            while True:
                processed, posted = conn.execute(
                    "SELECT (SELECT count(*) FROM runtime_inboundevent WHERE status <> 'received'),"
                    " (SELECT count(*) FROM runtime_delivery WHERE status = 'posted')").fetchone()
                if processed >= plan.scaleout_events and posted >= invoices:
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"scale-out run {tag} stalled: {processed} processed, {posted} posted")
                time.sleep(0.05)
            elapsed = time.perf_counter() - start
        db_drop(database)
        return {"elapsed": elapsed, "rate": plan.scaleout_events / elapsed, "load_average": os.getloadavg()[0]}

    def scaleout(self) -> None:
        plan = self.plan
        log(f"scale-out: {plan.scaleout_events} events (invoices and billing customers) inbox → done, one worker"
            f" -c {plan.worker_concurrency} on every queue vs two (finance | the rest), each -c {plan.worker_concurrency}"
            f"; broker {BROKER.split('@')[-1]}")
        runs: dict[str, list] = {"one": [], "two": []}

        def one(key: str, i: int) -> float:
            result = self.scaleout_run(f"{NAMESPACE}_scaleout", split=key == "two", tag=f"scale-{key}{i}")
            runs[key].append(result)
            log(f"  {key} worker(s): {result['rate']:6.1f} events/s ({result['elapsed']:.1f} s)")
            return result["rate"]

        one_rates, two_rates = interleave(plan.pairs, lambda i: one("one", i), lambda i: one("two", i))
        ratio = statistics.median(two_rates) / statistics.median(one_rates)
        loads = [run["load_average"] for run in runs["one"] + runs["two"]]
        self.figure("scaleout_throughput", title="Two workers on separate queues vs one, events done per s",
                    unit="/s", hub=two_rates, baseline=one_rates, goal="≥ 0.9 × one worker (the split costs nothing)",
                    met=ratio >= 0.9,
                    note=f"broker {'RabbitMQ' if amqp() else 'Redis'}; two workers: finance and the rest, each"
                         f" -c {plan.worker_concurrency}; one worker -c {plan.worker_concurrency} on every queue;"
                         f" load average {statistics.median(loads):.1f} on {os.cpu_count()} cores")
        self.extra["scaleout_runs"] = runs

    # -- reconciliation checkpoint ----------------------------------------------------

    def reconcile(self) -> None:
        """A month of ``reconcile_invoices`` customers, each one subscription with two
        metered metrics (two records per metric loaded, aggregated, pushed) and one invoice
        (two metered lines and a licensed one) posted to the ERP, seeded set-based; then
        ``checkpoint_run`` of the month with every stage, each run in a fresh process."""
        invoices = self.plan.reconcile_invoices
        database = f"{NAMESPACE}_reconcile"
        loads: list[float] = []
        db_clone(database)
        try:
            log(f"reconcile: seeding {invoices:,} invoices and their usage")
            child("reconcile_seed", database, "--rows", str(invoices))
            runs = []
            for _ in range(self.plan.pairs):
                *report, seconds = child("reconcile_run", database, capture=True).strip().splitlines()
                (self.logdir / "reconcile-lines.json").write_text("\n".join(report))
                runs.append(float(seconds))
                loads.append(os.getloadavg()[0])
        finally:
            db_drop(database)
        self.figure("reconcile_seconds", title=f"Reconciliation of a month with {invoices:,} invoices", unit="s",
                    hub=runs, baseline=None, goal="< 10 s (100,000 invoices)",
                    met=max(runs) < 10 if invoices >= 100_000 else None, higher_is_better=False,
                    note=f"{2 * invoices:,} customer × metric keys, {4 * invoices:,} records, {3 * invoices:,} "
                         "invoice lines; billing's summaries from an in-process stand-in (Stripe answers one "
                         "request per customer × meter, bound by its API rate, not measured here); load average "
                         f"{statistics.median(loads):.1f} on {os.cpu_count()} cores during the runs")

    # -- catalog full sync ------------------------------------------------------------

    def catalog(self) -> None:
        """A full catalog sync of ``catalog_skus`` SKUs, each a plan with monthly prices in
        USD, EUR and JPY and a yearly USD price (5 versions a SKU), from the product-platform
        sandbox: pull → draft versions → bulk approval → release through one worker into a
        fresh real Tryton and the Stripe API sandbox, timed until every version is released.
        Baseline: the same products and list prices written straight into a fresh Tryton by
        one JSON-RPC client (a template with its variant, then one list price per company)."""
        from connectors.tryton.server import DEFAULT_CACHE_DIR, TrytonServer, build_template

        skus = self.plan.catalog_skus
        template = build_template(DEFAULT_CACHE_DIR, progress=log)
        database = f"{NAMESPACE}_catalog"
        details: list[dict] = []

        def erp_spec(erp) -> str:
            return json.dumps({"config": erp.connection_config(), "credentials": erp.credentials()})

        def base(i: int) -> float:
            with TrytonServer(template) as erp:
                out = child("catalog_baseline", "postgres", "--events", str(skus), "--config", erp_spec(erp),
                            capture=True)
            return json.loads(out.strip().splitlines()[-1])["seconds"]

        def hub(i: int) -> float:
            db_clone(database)
            try:
                with TrytonServer(template) as erp, worker(database, self.plan.worker_concurrency, self.logdir,
                                                           f"catalog-{i}"):
                    out = child("catalog_hub", database, "--events", str(skus), "--config", erp_spec(erp),
                                capture=True)
                result = json.loads(out.strip().splitlines()[-1])
                details.append(result)
                return result["seconds"]
            finally:
                queue_purge()
                db_drop(database)

        log(f"catalog: full sync of {skus:,} SKUs ({skus * 5:,} versions), {self.plan.catalog_pairs} pair(s)")
        base_runs, hub_runs = interleave(self.plan.catalog_pairs, base, hub)
        ratio = statistics.median(hub_runs) / statistics.median(base_runs)
        self.extra["catalog_runs"] = details
        last = details[-1]
        self.figure("catalog_full_sync_seconds",
                    title=f"Catalog full sync, {skus:,} SKUs with regional prices (s)", unit="s",
                    hub=hub_runs, baseline=base_runs, goal="≤ 4 × the direct Tryton writes",
                    met=ratio <= 4 if skus >= 200 else None, higher_is_better=False,
                    note=(f"hub: pull {last['pull']:.1f} s, approval {last['approve']:.1f} s, release "
                          f"{last['release']:.1f} s of {last['versions']:,} versions ({last['deliveries']:,} "
                          "deliveries: Tryton products and list prices, Stripe products and prices), one worker "
                          f"-c {self.plan.worker_concurrency}; baseline: the same Tryton products and list prices "
                          "by one JSON-RPC client, no billing"))

    # -- backlog into the real ERP -------------------------------------------------

    def backlog(self) -> None:
        """``backlog_invoices`` invoice events accepted while the ERP (a real Tryton on
        PostgreSQL) is in a maintenance window, so every post is held; then the window is
        ended (the admin's "End now") and the time is taken until the last one is posted,
        with the worker -c ``worker_concurrency`` posting in the connector's batches.
        Baseline: the fastest direct method on a fresh copy of the same server, in the same
        run — one JSON-RPC client creating and posting the same invoices, one at a time
        (timed on ``backlog_sequential`` of them) and in batches of ``backlog_batch``."""
        from connectors.tryton.server import DEFAULT_CACHE_DIR, TrytonServer, build_template

        plan = self.plan
        template = build_template(DEFAULT_CACHE_DIR, progress=log, postgres=TRYTON_POSTGRES)
        database = f"{NAMESPACE}_backlog"
        runs: dict[str, list] = {"hub": [], "direct": []}

        def erp_spec(erp, **config) -> str:
            config = {**erp.connection_config(), **config}
            return json.dumps({"config": config, "credentials": erp.credentials()})

        # The connector's defaults unless the run sets them.
        hub_config = {**({"batch_size": plan.hub_batch} if plan.hub_batch else {}),
                      **({"timeout": plan.hub_timeout} if plan.hub_timeout else {})}

        def direct(i: int) -> float:
            seed = self.next_seed()
            with TrytonServer(template, postgres=TRYTON_POSTGRES) as erp:
                out = child("backlog_direct", "postgres", "--events", str(plan.backlog_invoices),
                            "--tasks", str(plan.backlog_sequential),
                            "--marks", json.dumps(sorted({plan.backlog_batch, plan.backlog_big_batch})),
                            "--seed", str(seed), "--config", erp_spec(erp, timeout=600), capture=True)
            result = json.loads(out.strip().splitlines()[-1])
            runs["direct"].append(result)
            log(f"  direct: {result['sequential']:.2f} invoices/s one at a time, "
                + ", ".join(f"{rate:.2f}/s in batches of {size}" for size, rate in result["batched"].items()))
            return max(result["sequential"], *result["batched"].values())

        def hub(i: int) -> float:
            db_clone(database)
            queue_purge()
            try:
                with TrytonServer(template, postgres=TRYTON_POSTGRES) as erp:
                    child("backlog_setup", database, "--config", erp_spec(erp, **hub_config))
                    with worker(database, plan.worker_concurrency, self.logdir, f"backlog-{i}"):
                        self.feed(database, plan.backlog_invoices)
                        out = child("backlog_drain", database, "--events", str(plan.backlog_invoices),
                                    "--config", erp_spec(erp, **hub_config), capture=True)
                result = json.loads(out.strip().splitlines()[-1])
            finally:
                queue_purge()
                db_drop(database)
            runs["hub"].append(result)
            log(f"  hub   : {result['rate']:.2f} invoices/s ({result['seconds']:.0f} s; batches {result['batches']};"
                f" in the ERP {result['erp_invoices']} invoices for {result['references']} references)")
            if result["erp_invoices"] != plan.backlog_invoices or result["references"] != plan.backlog_invoices:
                raise RuntimeError(f"backlog run {i} did not post each invoice exactly once: {result}")
            return result["rate"]

        log(f"backlog: {plan.backlog_invoices} invoices held by a maintenance window, drained into Tryton on"
            f" PostgreSQL in {f'batches of up to {plan.hub_batch}' if plan.hub_batch else 'the connector’s batches'},"
            " vs a direct JSON-RPC script")
        direct_rates, hub_rates = interleave(plan.backlog_pairs, direct, hub)
        ratio = statistics.median(hub_rates) / statistics.median(direct_rates)
        self.extra["backlog_runs"] = runs
        last = runs["direct"][-1]
        self.figure("backlog_drain_rate",
                    title=f"Backlog of {plan.backlog_invoices} invoices into Tryton on PostgreSQL, invoices/s",
                    unit="/s", hub=hub_rates, baseline=direct_rates,
                    goal=f"≥ {BACKLOG_GOAL} × the fastest direct method, each posted once",
                    met=ratio >= BACKLOG_GOAL if plan.backlog_invoices >= 100 else None,
                    note=(f"hub: from the window's end to the last post, worker -c {plan.worker_concurrency},"
                          f" batches {_batch_note(runs['hub'][-1]['batches'])}, governor cap 1 (Tryton's invoice"
                          " sequence takes one"
                          f" post at a time); baseline: the fastest of one JSON-RPC client creating and posting"
                          f" one at a time ({last['sequential']:.2f}/s over {plan.backlog_sequential}) and in"
                          " batches (" + ", ".join(f"of {size}: {rate:.2f}/s" for size, rate in last["batched"].items())
                          + f", each over {plan.backlog_invoices // 2} with their parties created in one call"
                          " first), each invoice's values prepared before the clock"))

    # -- memory and profile ---------------------------------------------------------

    def memory(self) -> None:
        web = self.extra.get("web_rss", {"hub": [0.0], "baseline": [0.0]})
        pipe = self.extra.get("pipeline_runs", {"hub": [], "baseline": []})
        self.figure("web_rss_mb", title="Web worker RSS under load (largest gunicorn process)", unit="MB",
                    hub=web["hub"], baseline=web["baseline"], goal="< 300 MB", met=max(web["hub"]) < 300,
                    higher_is_better=False, note="baseline: same server while serving the bare endpoint")
        self.figure("worker_rss_mb", title="Celery worker RSS under load (largest process)", unit="MB",
                    hub=[r["worker_rss_peak"] for r in pipe["hub"]],
                    baseline=[r["worker_rss_peak"] for r in pipe["baseline"]],
                    goal="< 300 MB", met=max(r["worker_rss_peak"] for r in pipe["hub"]) < 300,
                    higher_is_better=False, note="baseline: same worker running no-op tasks")

    def profile(self) -> None:
        if not self.plan.profile_events:
            return
        raw = self.logdir / "pipeline.pyspy"
        log(f"profiling the worker with py-spy over {self.plan.profile_events} events")
        result = self.hub_pipeline(f"{NAMESPACE}_profile", self.plan.profile_events,
                                   concurrency=self.plan.worker_concurrency, tag="profile", profile=raw)
        db_drop(f"{NAMESPACE}_profile")
        if raw.exists():
            text = profile_summary(raw.read_text(), result)
            (BENCH_DIR / "profiles").mkdir(exist_ok=True)
            (BENCH_DIR / "profiles" / "pipeline-current.txt").write_text(text)
            self.extra["profile"] = text
        else:
            log("  py-spy wrote nothing (is ptrace allowed?); profile skipped")


# --------------------------------------------------------------------- profile summary


_OURS = re.compile(r"(integration_hub|connectors|canonical|benchmarks)/")


def profile_summary(raw: str, run: dict) -> str:
    """Inclusive share of samples per function from py-spy's collapsed stacks, for the
    hub's own code and for the libraries underneath (ORM, driver, pydantic, Celery)."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = stack.split(";")
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        total += samples
        seen = set()
        for frame in frames:
            name = re.sub(r":\d+\)$", ")", frame.strip())  # one entry per function, not per line
            if name not in seen:
                seen.add(name)
                inclusive[name] = inclusive.get(name, 0) + samples
        if frames:
            leaf = re.sub(r":\d+\)$", ")", frames[-1].strip())
            own[leaf] = own.get(leaf, 0) + samples
    busy = max((n for name, n in inclusive.items() if "trace_task" in name), default=0) or total
    lines = [
        f"py-spy, {run['events']} events at {run['rate']:.1f} events/s under the profiler;"
        f" {total} samples, {busy} inside tasks (percentages below are of task samples)",
        "",
        "inclusive, the hub's own functions:",
    ]
    ours = sorted(((n, name) for name, n in inclusive.items() if _OURS.search(name)), reverse=True)[:30]
    lines += [f"  {100 * n / busy:5.1f} %  {name}" for n, name in ours]
    lines += ["", "own time (leaf frames), top 20:"]
    lines += [f"  {100 * n / busy:5.1f} %  {name}" for n, name in sorted(((n, k) for k, n in own.items()),
                                                                      reverse=True)[:20]]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------- report


def machine() -> dict[str, str]:
    with pg_admin() as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
        shared_buffers = conn.execute("SHOW shared_buffers").fetchone()[0]
    redis_version = redis_client().info("server")["redis_version"]
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    import celery
    import django

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    # What a run writes itself (results, the profile) does not make the measured code differ.
    dirty = subprocess.run(["git", "status", "--porcelain", "--", ".", ":!benchmarks/results*.json",
                            ":!benchmarks/RESULTS*.md", ":!benchmarks/profiles"],
                           cwd=ROOT, capture_output=True, text=True)
    return {
        "cpu": f"{os.cpu_count()} × {cpu}", "memory": f"{int(mem) // 1024 // 1024} GiB",
        "python": platform.python_version(), "django": django.get_version(), "celery": celery.__version__,
        "postgresql": f"{pg_version} (shared_buffers {shared_buffers})", "redis": redis_version,
        "commit": commit.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else ""),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load average at the end (other work on the machine shows here)": Path("/proc/loadavg").read_text().strip(),
    }


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def carry_over(suite: Suite, out_json: Path) -> None:
    """Keep the figures of an earlier run that this one did not measure (``--only … --merge``),
    each with the date and commit of the run that measured it."""
    if not out_json.exists():
        return
    earlier = json.loads(out_json.read_text())
    stamp = {"date": earlier["machine"]["date"], "commit": earlier["machine"]["commit"]}
    for key, fig in earlier["figures"].items():
        if key not in suite.figures:
            suite.figures[key] = {**fig, "measured": fig.get("measured", stamp)}
    for key, detail in earlier.get("details", {}).items():  # e.g. the sweeper's query plans
        suite.extra.setdefault(key, detail)


def write_report(suite: Suite, out_md: Path, out_json: Path, seconds: float) -> None:
    info = machine()
    plan = suite.plan
    for fig in suite.figures.values():
        fig.setdefault("measured", {"date": info["date"], "commit": info["commit"]})
    broker = "RabbitMQ (quorum queues)" if amqp() else "Redis"
    data = {"plan": plan.__dict__, "machine": info, "broker": broker, "seconds": seconds, "figures": suite.figures,
            "details": {k: v for k, v in suite.extra.items() if k not in ("profile",)}}
    out_json.write_text(json.dumps(data, indent=2, default=str) + "\n")

    earlier = [f"* {fig['title']}: {fig['measured']['date']}, commit {fig['measured']['commit']}"
               for fig in suite.figures.values() if fig["measured"]["date"] != info["date"]]
    rows = []
    for key in FIGURES:
        fig = suite.figures.get(key)
        if fig is None:
            continue
        hub, base = fig["hub"], fig["baseline"]
        status = {True: "met", False: "**not met**", None: "pending"}[fig["met"]]
        ratio = fig.get("ratio_to_ceiling", fig["ratio"])
        rows.append(
            f"| {fig['title']} | {fmt(hub['median'])} {fig['unit']} | "
            f"{fmt(base['median']) + ' ' + fig['unit'] if base else '—'} | {fmt(ratio)} | "
            f"±{hub['spread'] * 100:.0f} % / {('±' + format(base['spread'] * 100, '.0f') + ' %') if base else '—'} | "
            f"{fig['goal']} | {status} |"
        )
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make {'bench' if plan.name == 'full' else 'bench-smoke'}` ({plan.name} plan) in {seconds:.0f} s"
        + (f"; {len(earlier)} of the {len(suite.figures)} figures carried over by `--merge` from the earlier runs"
           " listed under the table." if earlier else ".")
        + " Every figure is the median of interleaved runs (baseline, hub, baseline, hub, …) in the same run, on the"
        " same services and settings; spread is (max − min) / median over the runs. See docs/benchmarks.md."
        f" Celery broker: {broker}.",
        "",
        "| figure | hub | baseline | ratio | spread hub / baseline | goal | status |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "Ratios: hub ÷ baseline; for the slow ERP, hub ÷ the sandbox's ceiling"
        f" ({plan.slow_cap} × 1000 / {plan.slow_latency_ms} ms)."
        " Latency and memory figures are better when lower.",
        "",
    ]
    if earlier:
        lines += ["Carried over from an earlier run (`--merge`; each figure against its own baseline of that run):",
                  "", *earlier, ""]
    notes = [f"* {fig['title']}: {fig['note']}" for fig in suite.figures.values() if fig.get("note")]
    if notes:
        lines += ["Notes:", "", *notes, ""]
    lines += [
        "## Machine and settings",
        "",
        *[f"* {k}: {v}" for k, v in info.items()],
        f"* pairs per figure: {plan.pairs}; ingest: {plan.ingest_seconds:.0f} s per run (at most"
        f" {plan.ingest_max_requests} requests), connections {', '.join(map(str, plan.ingest_connections))};"
        " gunicorn 2 sync workers; one new TCP connection per request (sync workers close after each response)",
        f"* pipeline: {plan.pipeline_events:,} events, one worker `-c {plan.worker_concurrency}` (prefork,"
        " prefetch 1, acks late); events fed through `inbound_accept` with the worker stopped, timed from the"
        " worker's `ready.` until the last delivery is posted (no-op: until the queue and its unacked set are empty)",
        f"* slow ERP: {plan.slow_docs} documents, worker `-c {plan.slow_worker_concurrency}`; the sandbox refuses"
        " (429) a call beyond its cap; rate from the first attempt to the last posted document",
        f"* history: {plan.history_rows[0]:,} vs {plan.history_rows[1]:,} finished rows in each of inbox, business"
        f" transactions, invoices, deliveries, attempts and cross-references; {plan.history_events:,} events per run",
        f"* catalog: {plan.catalog_skus:,} SKUs × 5 versions from the product-platform sandbox, {plan.catalog_pairs}"
        " pair(s), each against a fresh copy of the real Tryton template (SQLite) and, for the hub, the Stripe API"
        " sandbox; the hub's time runs from the pull to the last version released",
        "* HUB_ENV=production (DEBUG off), LOG_LEVEL=INFO with JSON logs to a file, PostgreSQL and Redis as"
        " running on this machine (Redis db 5, queue `hub-bench`), databases `bench_*`",
        "",
    ]
    if "sweep_plans" in suite.extra:
        lines += ["## Sweeper query plans (EXPLAIN ANALYZE)", ""]
        for key, text in suite.extra["sweep_plans"].items():
            lines += [f"### {key} history", "", "```", text.rstrip(), "```", ""]
    before = BENCH_DIR / "profiles" / "pipeline-before.txt"
    if before.exists() or "profile" in suite.extra:
        lines += ["## Worker profile (py-spy) during the pipeline benchmark", ""]
        if before.exists():
            lines += ["### Before the fixes", "", "```", before.read_text().rstrip(), "```", ""]
        if "profile" in suite.extra:
            lines += ["### This run", "", "```", str(suite.extra["profile"]).rstrip(), "```", ""]
    findings = BENCH_DIR / "profiles" / "findings.md"
    if findings.exists():
        lines += [findings.read_text().rstrip(), ""]
    out_md.write_text("\n".join(lines))


# --------------------------------------------------------------------- child steps (Django loaded)


def _django() -> None:
    import django

    django.setup()


def step_setup(args) -> None:
    _django()
    from canonical.models import LegalEntity
    from canonical.policy_services import policy_bootstrap
    from connectors.services import connection_upsert

    for code, name, currency, country in (("US", "Acme US Inc.", "USD", "US"),
                                          ("EU", "Acme Europe GmbH", "EUR", "DE"),
                                          ("JP", "Acme Japan KK", "JPY", "JP")):
        LegalEntity.objects.get_or_create(code=code, defaults={"name": name, "currency": currency, "country": country})
    policy_bootstrap(taxes={"10": "VAT-10", "0": ""})  # invoices post by an approved posting policy
    connection_upsert(name="stripe", vendor="stripe", role="billing", config={},
                      credentials={"webhook_secrets": [WEBHOOK_SECRET]})
    connection_upsert(name="erp", vendor="bench-erp", role="erp", config={}, credentials={"login": "bench"})


def step_slow_erp_setup(args) -> None:
    """Swap the instant ERP for the slow one, and give it the concurrency cap if the
    runtime's governor has one (prints what it configured)."""
    _django()
    from django.apps import apps

    from connectors.models import Connection
    from connectors.services import connection_upsert

    Connection.objects.filter(name="erp").update(is_active=False)
    slow = connection_upsert(
        name="slow-erp", vendor="bench-slow-erp", role="erp", credentials={},
        config={"redis_url": REDIS, "prefix": SLOW_ERP_PREFIX, "latency_ms": args.latency_ms,
                "max_concurrency": args.cap},
    )
    try:
        policy_model = apps.get_model("runtime", "AdmissionPolicy")
    except LookupError:
        print("none (no AdmissionPolicy model)")
        return
    policy_model.objects.update_or_create(connection=slow, defaults={"max_concurrency": args.cap})
    print(f"max_concurrency={args.cap} (AdmissionPolicy)")


class _StripeFeeder:
    """Signed Stripe events through the webhook's own parsing and ``inbound_accept``
    (which enqueues after commit): distinct invoices for 200 customers, or new customers."""

    def __init__(self, seed: int):
        from connectors.registry import webhook_receiver
        from connectors.stripe.sandbox import StripeSandbox

        self.seed, self.sandbox, self.receiver = seed, StripeSandbox(WEBHOOK_SECRET, seed=seed), webhook_receiver("stripe")
        self.customers = [self.sandbox.customer(f"Customer {seed}-{i}", f"c{i}@example.com") for i in range(200)]

    def accept(self, event: dict) -> None:
        from integration_hub.runtime.services import inbound_accept

        body, headers = self.sandbox.webhook_request(event)
        self.receiver.verify(body=body, headers=headers, secrets=[WEBHOOK_SECRET], method="POST", url="")
        for parsed in self.receiver.parse(body):
            inbound_accept(source="stripe", event=parsed)

    def invoice(self, i: int) -> None:
        currency = (["usd"] * 7 + ["eur"] * 2 + ["jpy"])[i % 10]
        invoice = self.sandbox.finalize(self.sandbox.invoice(
            self.customers[i % 200], [("Seats", 1 + i % 5, 2500), ("Support", 1, 1000)], currency=currency,
        ))
        self.accept(self.sandbox.event("invoice.finalized", invoice))

    def customer(self, i: int) -> None:
        customer = self.sandbox.customer(f"Billing customer {self.seed}-{i}", f"b{self.seed}-{i}@example.com")
        self.accept(self.sandbox.event("customer.created", customer))


def step_feed(args) -> None:
    """Accept ``--events`` distinct invoice events and ``--customers`` billing-customer events."""
    _django()
    feeder = _StripeFeeder(args.seed)
    for i in range(args.events):
        feeder.invoice(i)
    for i in range(args.customers):
        feeder.customer(i)


def step_trickle(args) -> None:
    """Accept invoice events one by one at ``--rate`` a second: ``--events`` of them, and with
    ``--while-loading`` on until no usage batch is left to load. Prints [accepted, seconds
    until the load was over] (0 without one)."""
    _django()
    from integration_hub.usage.models import UsageBatch

    feeder = _StripeFeeder(args.seed)
    start = time.perf_counter()
    accepted, load_seconds = 0, 0.0
    loading = args.while_loading
    while (accepted < args.events or loading) and time.perf_counter() - start < 900:
        time.sleep(max(0.0, start + accepted / args.rate - time.perf_counter()))
        feeder.invoice(accepted)
        accepted += 1
        if loading and not UsageBatch.objects.exclude(status__in=[UsageBatch.Status.LOADED,
                                                                   UsageBatch.Status.FAILED]).exists():
            loading, load_seconds = False, time.perf_counter() - start
    print(json.dumps([accepted, load_seconds]))


def step_usage_receive(args) -> None:
    """Receive the usage file at ``--path`` as an upload: its load is queued for the bulk worker."""
    _django()
    from integration_hub.usage.models import UsageBatch
    from integration_hub.usage.services import batch_receive

    with open(args.path, "rb") as stream:
        batch_receive(stream=stream, filename=Path(args.path).name, source=UsageBatch.Source.API)


def step_noop_send(args) -> None:
    _django()
    from benchmarks.stub_erp.tasks import NOOP_TASK
    from integration_hub.celery import app

    with app.producer_or_acquire() as producer:
        for i in range(args.tasks):
            app.send_task(NOOP_TASK, args=[i], producer=producer)


HISTORY_TABLES = [  # child tables first (the order rows are trimmed in)
    "runtime_deliveryattempt", "runtime_exceptionrecord", "runtime_delivery", "canonical_crossreference",
    "canonical_invoiceline", "canonical_postingdecision", "canonical_payment", "canonical_invoice", "canonical_customer",
    "runtime_inboundevent",
]


def _fill(cur, table: str, given: dict[str, str]) -> tuple[str, str]:
    """Column list and SELECT expressions for ``table``: ``given`` plus a neutral value
    for every other NOT NULL column without a default (so a new column added by a
    migration does not break the loader)."""
    cur.execute(
        "SELECT column_name, data_type, is_nullable, column_default, is_identity FROM information_schema.columns"
        " WHERE table_name = %s ORDER BY ordinal_position", [table],
    )
    columns, values = [], []
    for name, kind, nullable, default, identity in cur.fetchall():
        if identity == "YES":
            continue
        if name in given:
            columns.append(name)
            values.append(given[name])
        elif nullable == "NO" and default is None:
            neutral = {"boolean": "false", "jsonb": "'{}'::jsonb", "uuid": "gen_random_uuid()",
                       "timestamp with time zone": "now()", "date": "current_date"}.get(kind)
            if neutral is None:
                neutral = "0" if kind in ("integer", "bigint", "smallint", "numeric", "double precision") else "''"
            columns.append(name)
            values.append(neutral)
    return ", ".join(columns), ", ".join(values)


def step_load_history(args) -> None:
    """Bulk-load ``--rows`` finished invoices with their inbox event, business
    transaction, posted delivery, attempt and cross-reference (INSERT … SELECT
    generate_series), then ANALYZE."""
    _django()
    from django.db import connection

    n = args.rows
    with connection.cursor() as cur:
        cur.execute("SELECT id FROM connectors_connection WHERE name = 'erp'")
        erp = cur.fetchone()[0]
        cur.execute("SELECT id FROM canonical_legalentity WHERE code = 'US'")
        entity = cur.fetchone()[0]
        columns, values = _fill(cur, "canonical_customer", {
            "display_name": "'History customer'", "email": "'h@example.com'", "address": "'{}'::jsonb",
            "country": "'US'", "tax_ids": "'[]'::jsonb", "currency": "'USD'", "version": "1",
            "created_at": "now()", "updated_at": "now()"})
        cur.execute(f"INSERT INTO canonical_customer ({columns}) SELECT {values} RETURNING id")
        customer = cur.fetchone()[0]
        cur.execute("CREATE TEMP TABLE hist AS SELECT g AS n, gen_random_uuid() AS txn,"
                    " now() - (g || ' seconds')::interval AS at FROM generate_series(1, %s) g", [n])
        statements = {
            "runtime_businesstransaction": {"id": "txn", "kind": "'invoice'", "subject": "'hist:invoice:' || n",
                                            "created_at": "at"},
            "runtime_inboundevent": {
                "transaction_id": "txn", "source": "'stripe'", "external_id": "'evt_hist_' || n",
                "event_type": "'invoice.finalized'",
                "payload": "jsonb_build_object('id', 'evt_hist_' || n, 'object', 'event', 'type', 'invoice.finalized')",
                "occurred_at": "at", "status": "'processed'", "attempts": "1", "note": "''", "received_at": "at",
                "enqueued_at": "at", "processed_at": "at"},
            "canonical_invoice": {
                "source_system": "'stripe'", "source_id": "'in_hist_' || n", "number": "'H-' || n",
                "customer_id": str(customer), "legal_entity_id": str(entity), "currency": "'USD'",
                "status": "'open'", "issued_on": "at::date", "subtotal": "2500", "tax": "250", "total": "2750",
                "amount_paid": "0", "subscription_ref": "''", "transaction_id": "txn", "version": "1",
                "created_at": "at", "updated_at": "at"},
        }
        for table, given in statements.items():
            columns, values = _fill(cur, table, given)
            cur.execute(f"INSERT INTO {table} ({columns}) SELECT {values} FROM hist")
        cur.execute("CREATE TEMP TABLE hist_inv AS SELECT h.*, i.id AS invoice FROM hist h"
                    " JOIN canonical_invoice i ON i.source_id = 'in_hist_' || h.n")
        later = {
            "runtime_delivery": {
                "transaction_id": "txn", "connection_id": str(erp), "action": "'invoice.post'",
                "object_type": "'invoice'", "object_id": "invoice",
                "idempotency_key": "'invoice.post:erp:invoice:' || invoice || ':v1'", "status": "'posted'",
                "attempts": "1", "next_attempt_at": "at", "enqueued_at": "at", "claimed_at": "at",
                "external_id": "'erp-hist-' || n", "external_number": "'H-' || n", "last_error": "''",
                "created_at": "at", "updated_at": "at"},
            "canonical_crossreference": {
                "system": "'erp'", "object_type": "'invoice'", "canonical_id": "invoice",
                "external_id": "'erp-hist-' || n", "external_number": "'H-' || n"},
        }
        for table, given in later.items():
            columns, values = _fill(cur, table, given)
            cur.execute(f"INSERT INTO {table} ({columns}) SELECT {values} FROM hist_inv")
        columns, values = _fill(cur, "runtime_deliveryattempt", {
            "delivery_id": "d.id", "number": "1", "started_at": "d.created_at", "duration_ms": "5",
            "outcome": "'posted'", "error_class": "''", "message": "''"})
        cur.execute(f"INSERT INTO runtime_deliveryattempt ({columns}) SELECT {values} FROM runtime_delivery d"
                    " WHERE d.external_id LIKE 'erp-hist-%'")
    # Leave nothing for autovacuum to do during the measurements (a first vacuum of a
    # million fresh rows rewrites every page), and flush the load's WAL now.
    with connection.cursor() as cur:
        cur.execute("VACUUM (FREEZE, ANALYZE)")
        cur.execute("CHECKPOINT")


def step_history_marks(args) -> None:
    _django()
    from django.db import connection

    marks = {}
    with connection.cursor() as cur:
        for table in HISTORY_TABLES:
            cur.execute(f"SELECT coalesce(max(id), 0) FROM {table}")
            marks[table] = cur.fetchone()[0]
        cur.execute("SELECT now()")
        marks["now"] = cur.fetchone()[0].isoformat()
    print(json.dumps(marks))


def step_history_trim(args) -> None:
    """Remove what a run added, so every run starts with the same history."""
    _django()
    from django.db import connection, transaction

    marks = json.loads(args.marks)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("UPDATE runtime_delivery SET after_id = NULL WHERE id > %s", [marks["runtime_delivery"]])
        for table in HISTORY_TABLES:
            cur.execute(f"DELETE FROM {table} WHERE id > %s", [marks[table]])
        cur.execute("DELETE FROM runtime_businesstransaction WHERE created_at >= %s", [marks["now"]])


def step_sweep(args) -> None:
    """Time ``sweep()`` (nothing to do, as in steady state) and EXPLAIN ANALYZE its queries."""
    _django()
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from integration_hub.runtime.services import sweep

    timings = []
    sweep()  # warm the connection and caches
    for _ in range(args.repeat):
        start = time.perf_counter()
        sweep()
        timings.append((time.perf_counter() - start) * 1000)
    with CaptureQueriesContext(connection) as captured:
        sweep()
    explains = []
    for query in captured.captured_queries:
        sql = query["sql"]
        if not sql.lstrip().upper().startswith("SELECT"):
            continue
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(f"EXPLAIN (ANALYZE, BUFFERS, TIMING) {sql}")
            plan = "\n".join(row[0] for row in cur.fetchall())
            transaction.set_rollback(True)
        explains.append(f"-- {sql}\n{plan}")
    print(json.dumps({"median_ms": statistics.median(timings), "runs_ms": timings,
                      "explain": "\n\n".join(explains)}))


def step_usage_setup(args) -> None:
    """The 500 subscriptions of the usage file, known (so its records match)."""
    _django()
    from canonical.models import LegalEntity
    from integration_hub.usage.models import UsageSubscription

    entity = LegalEntity.objects.order_by("pk").first() or LegalEntity.objects.create(
        code="US", name="Bench US", currency="USD", country="US")
    UsageSubscription.objects.bulk_create([UsageSubscription(subscription=f"sub_{n}", legal_entity=entity,
                                                             billing_customer=f"cus_{n}") for n in range(500)])


def step_usage_aggregate(args) -> None:
    """Prints the seconds one aggregation of January 2025 takes."""
    _django()
    from integration_hub.usage.services import period_aggregate

    start = time.perf_counter()
    period_aggregate(dt.date(2025, 1, 1))
    print(f"{time.perf_counter() - start:.3f}")


RECONCILE_PERIOD = dt.date(2025, 1, 1)


def step_reconcile_seed(args) -> None:
    """``--rows`` customers, subscriptions and invoices of January 2025 with their usage
    records, aggregates, sent meter events, metered catalog prices, invoice lines and
    posted ERP deliveries (INSERT … SELECT generate_series), then ANALYZE."""
    _django()
    from django.db import connection

    import benchmarks.stub_billing  # noqa: F401 - registers bench-billing
    from canonical.models import CrossReference, LegalEntity, Price, PriceVersion, Product
    from connectors.services import connection_upsert
    from integration_hub.usage.services import period_get

    n, period = args.rows, RECONCILE_PERIOD
    billing = connection_upsert(name="bench-billing", vendor="bench-billing", role="billing", config={},
                                credentials={})
    entity = LegalEntity.objects.get(code="US")
    entity.billing_connection = billing.name
    entity.save(update_fields=["billing_connection"])
    found = period_get(period)
    product = Product.objects.create(sku="BENCH-USAGE", name="Bench usage")
    for metric in ("api_calls", "storage_gb"):
        price = Price.objects.create(product=product, currency="USD", source_system="platform",
                                     source_id=f"bench-{metric}")
        version = PriceVersion.objects.create(price=price, number=1, status="released", content_hash=metric, content={
            "usage_type": "metered", "meter_event_name": metric, "type": "recurring", "interval": "month"})
        CrossReference.objects.create(system=billing.name, object_type="price_version", canonical_id=version.pk,
                                      external_id=f"price_bench_{metric}")
    quantity = "(((n % 97) + 1) * 1000000 + 500000)"  # millionths, per record
    metrics = "(VALUES ('api_calls'), ('storage_gb')) mm(metric)"
    with connection.cursor() as cur:
        cur.execute("SELECT id FROM connectors_connection WHERE name = 'erp'")
        erp = cur.fetchone()[0]
        cur.execute(f"CREATE TABLE IF NOT EXISTS usage_record_y{period:%Y}m{period:%m} PARTITION OF usage_record "
                    f"FOR VALUES FROM ('{period} 00:00:00+00') TO ('2025-02-01 00:00:00+00')")
        cur.execute("CREATE TEMP TABLE rc AS SELECT g AS n FROM generate_series(1, %s) g", [n])
        inserts = [
            ("usage_usagesubscription", {"subscription": "'rsub_' || n", "legal_entity_id": str(entity.pk),
                                         "billing_customer": "'cus_r' || n", "created_at": "now()"}, "rc"),
            ("usage_record", {
                "event_id": "'rev-' || n || '-' || metric || '-' || k", "batch_id": "0", "line": "k",
                "subscription": "'rsub_' || n", "metric": "metric", "quantity": quantity,
                "occurred_at": "'2025-01-15 10:00:00+00'", "day": "'2025-01-15'", "period": f"'{period}'",
                "billing_period": f"'{period}'", "matched": "true"}, f"rc, {metrics}, generate_series(1, 2) k"),
            ("usage_aggregate", {"period": f"'{period}'", "subscription": "'rsub_' || n", "metric": "metric",
                                 "quantity": f"2 * {quantity}", "records": "2", "updated_at": "now()"},
             f"rc, {metrics}"),
            ("usage_usagepush", {"period_id": str(found.pk), "connection_id": str(billing.pk), "kind": "'period'",
                                 "sent_at": "now()", "created_at": "now()"},
             f"generate_series(1, {(2 * n + 99) // 100}) n"),
            ("canonical_customer", {"display_name": "'rc-' || n", "email": "''", "address": "'{}'::jsonb",
                                    "country": "'US'", "tax_ids": "'[]'::jsonb", "currency": "'USD'",
                                    "version": "1", "created_at": "now()", "updated_at": "now()"}, "rc"),
        ]
        for table, given, source in inserts:
            columns, values = _fill(cur, table, given)
            cur.execute(f"INSERT INTO {table} ({columns}) SELECT {values} FROM {source}")
        cur.execute("SELECT MIN(id) FROM usage_usagepush")
        first_push = cur.fetchone()[0]
        columns, values = _fill(cur, "usage_usagemeterevent", {
            "aggregate_id": "id", "push_id": f"{first_push} + (rn - 1) / 100",
            "identifier": "'hub-usage-' || id || '-p'", "quantity": "quantity",
            "timestamp": "'2025-01-31 23:59:59+00'"})
        cur.execute(f"INSERT INTO usage_usagemeterevent ({columns}) SELECT {values} FROM "
                    "(SELECT id, quantity, row_number() OVER (ORDER BY id) AS rn FROM usage_aggregate) a")
        cur.execute("CREATE TEMP TABLE rcc AS SELECT id AS customer, substr(display_name, 4)::int AS n "
                    "FROM canonical_customer WHERE display_name LIKE 'rc-%%'")
        cur.execute("INSERT INTO runtime_businesstransaction (id, kind, subject, created_at) "
                    "VALUES (gen_random_uuid(), 'invoice', 'bench:reconcile', now()) RETURNING id")
        txn = cur.fetchone()[0]
        later = [
            ("canonical_crossreference", {"system": f"'{billing.name}'", "object_type": "'customer'",
                                          "canonical_id": "customer", "external_id": "'cus_r' || n",
                                          "external_number": "''", "created_at": "now()"}, "rcc"),
            ("canonical_invoice", {
                "source_system": f"'{billing.name}'", "source_id": "'in_rc_' || n", "number": "'R-' || n",
                "customer_id": "customer", "legal_entity_id": str(entity.pk), "currency": "'USD'",
                "status": "'paid'", "issued_on": "'2025-02-01'", "subtotal": "0", "tax": "0", "total": "0",
                "amount_paid": "0", "subscription_ref": "''", "version": "1", "created_at": "now()",
                "updated_at": "now()"}, "rcc"),
        ]
        for table, given, source in later:
            columns, values = _fill(cur, table, given)
            cur.execute(f"INSERT INTO {table} ({columns}) SELECT {values} FROM {source}")
        cur.execute("CREATE TEMP TABLE rci AS SELECT id AS invoice, substr(source_id, 7)::int AS n "
                    "FROM canonical_invoice WHERE source_id LIKE 'in_rc_%%'")
        lines = ("(VALUES (1, 'price_bench_api_calls'), (2, 'price_bench_storage_gb'), (3, 'price_bench_seats')) "
                 "ll(position, price_ref)")
        columns, values = _fill(cur, "canonical_invoiceline", {
            "invoice_id": "invoice", "position": "position", "description": "price_ref", "source_line_id": "''",
            "quantity": f"CASE WHEN position = 3 THEN 5 ELSE 2 * {quantity} / 1000000.0 END", "amount": "0",
            "tax_amount": "0", "product_ref": "''", "price_ref": "price_ref", "period_start": f"'{period}'",
            "period_end": "'2025-02-01'"})
        cur.execute(f"INSERT INTO canonical_invoiceline ({columns}) SELECT {values} FROM rci, {lines}")
        columns, values = _fill(cur, "runtime_delivery", {
            "transaction_id": f"'{txn}'", "connection_id": str(erp), "action": "'invoice.post'",
            "object_type": "'invoice'", "object_id": "invoice",
            "idempotency_key": "'invoice.post:erp:invoice:' || invoice || ':v1'", "status": "'posted'",
            "attempts": "1", "next_attempt_at": "now()", "external_id": "'erp-rc-' || n", "external_number": "''",
            "last_error": "''", "hold_reason": "''", "serial_key": "''", "lookup_first": "false",
            "created_at": "now()", "updated_at": "now()"})
        cur.execute(f"INSERT INTO runtime_delivery ({columns}) SELECT {values} FROM rci")
    with connection.cursor() as cur:
        cur.execute("VACUUM (FREEZE, ANALYZE)")
        cur.execute("CHECKPOINT")


def step_reconcile_run(args) -> None:
    """Prints the seconds one checkpoint of the seeded month takes (it must balance)."""
    _django()
    import benchmarks.stub_billing  # noqa: F401 - registers bench-billing
    from connectors.services import connection_for_role, connector_for
    from integration_hub.usage.services import _period_bounds, checkpoint_run

    # Billing's side is not the hub's time: the stand-in reads its totals before the clock starts.
    connector_for(connection_for_role("billing", name="bench-billing")).meter_usage(
        event_name="api_calls", customer="", start=_period_bounds(RECONCILE_PERIOD)[0],
        end=_period_bounds(RECONCILE_PERIOD)[1])
    start = time.perf_counter()
    checkpoint = checkpoint_run(RECONCILE_PERIOD, trigger="bench", invoice_stages=True)
    seconds = time.perf_counter() - start
    if checkpoint.status != "balanced":
        raise SystemExit(f"the seeded month does not balance: {checkpoint.mismatches[:3]}")
    print(json.dumps(checkpoint.lines))  # the stages' counts, for the log
    print(f"{seconds:.3f}")


def step_catalog_baseline(args) -> None:
    """Write ``--events`` SKUs (the sandbox's generated plans) straight into Tryton:
    one template with its variant, then each company's list price. Prints the seconds."""
    _django()
    from decimal import Decimal

    from connectors.product_platform.sandbox import ProductPlatformSandbox
    from connectors.tryton.connector import TrytonConnector

    spec = json.loads(args.config)
    platform = ProductPlatformSandbox(items=[])
    platform.scale(args.events, prefix="BENCH")
    connector = TrytonConnector(config=spec["config"], credentials=spec["credentials"])
    client, companies = connector.client, spec["config"]["companies"]
    currencies = {row["id"]: row["currency."]["code"] for row in client.call(
        "company.company", "read", list(companies.values()), ["id", "currency.code"])}
    category, unit = connector.products.category(), connector.products._unit()  # setup, not timed
    start = time.perf_counter()
    for item in platform.items.values():
        template, = client.call("product.template", "create", [{
            "name": item["name"], "type": "service", "default_uom": unit, "account_category": category,
            "products": [["create", [{"suffix_code": item["sku"], "description": item["description"]}]]]}])
        for company, currency in currencies.items():
            price = next(p for p in item["prices"] if p["is_default"] and p["currency"].upper() == currency)
            client.call("product.template", "write", [template], {"list_price": Decimal(price["unit_amount"])},
                        context={"company": company})
    print(json.dumps({"seconds": time.perf_counter() - start}))


def _catalog_connect(skus: int, erp: dict | None):
    """Serve, from this process, the product-platform sandbox with ``skus`` generated plans
    and the Stripe API sandbox, and connect the hub to them. ``erp`` (a Tryton's config and
    credentials) replaces the template's instant ERP; None keeps the instant one (it takes
    releases too). Returns (platform, stripe_api, the catalog connection)."""
    from connectors.models import Connection
    from connectors.product_platform.sandbox import ProductPlatformSandbox
    from connectors.services import connection_upsert
    from connectors.stripe.api_sandbox import StripeApiSandbox

    platform, stripe_api = ProductPlatformSandbox(items=[]), StripeApiSandbox()
    platform.scale(skus, prefix="BENCH")
    platform.serve()
    stripe_api.serve()
    if erp is not None:
        Connection.objects.filter(role="erp").update(is_active=False)  # the template's stub ERP
        connection_upsert(name="tryton", vendor="tryton", role="erp", config=erp["config"],
                          credentials=erp["credentials"])
    connection_upsert(name="stripe", vendor="stripe", role="billing", config=stripe_api.connection_config(),
                      credentials={"api_key": stripe_api.api_key, "webhook_secrets": [WEBHOOK_SECRET]})
    catalog = connection_upsert(name="catalog", vendor="product_platform", role="product",
                                config=platform.connection_config(paging={"style": "cursor", "limit": 200}),
                                credentials=platform.credentials())
    return platform, stripe_api, catalog


def _catalog_pull_drafts(catalog, skus: int) -> list:
    """The full pull of ``skus`` SKUs (5 versions each); returns the draft versions it made."""
    from canonical.models import CatalogVersion, PriceVersion, ProductVersion
    from integration_hub.workflows.catalog_pull import catalog_pull_now

    run = catalog_pull_now(catalog, full_scan=True)
    if run.status != "succeeded" or run.counts["new_versions"] != skus * 5:
        raise SystemExit(f"the pull made {run.counts} ({run.status}: {run.error})")
    return list(ProductVersion.objects.filter(status=CatalogVersion.Status.DRAFT)) + list(
        PriceVersion.objects.filter(status=CatalogVersion.Status.DRAFT))


def step_catalog_release(args) -> None:
    """A catalog release of ``--events`` SKUs into the instant ERP and the Stripe API
    sandbox, driven from here as an approver would, paced by the orchestrator: prints
    ``connected`` once the connections are set up; on a line on stdin pulls, prints
    ``releasing`` and approves every version in bulk (each approval sends its release
    deliveries to the catalog queue); then serves the sandboxes until stopped. With
    ``--events 0``, the same connections and nothing pulled (the idle run)."""
    _django()
    from django.contrib.auth import get_user_model

    from integration_hub.workflows.catalog import versions_approve

    platform, stripe_api, catalog = _catalog_connect(args.events, None)
    print("connected", flush=True)
    sys.stdin.readline()
    drafts = _catalog_pull_drafts(catalog, args.events) if args.events else []
    print("releasing", flush=True)
    if drafts:
        approver = get_user_model().objects.create_superuser("bench-approver", "approver@example.com", None)
        versions_approve(drafts, user=approver)
    sys.stdin.readline()  # the sandboxes serve the release until the orchestrator stops this process
    platform.stop()
    stripe_api.stop()


def step_catalog_hub(args) -> None:
    """The hub's full sync of ``--events`` SKUs into Tryton (``--config``) and a Stripe API
    sandbox served here, with the worker the orchestrator started. Prints the timings."""
    _django()
    from django.contrib.auth import get_user_model

    from canonical.models import CatalogVersion, PriceVersion, ProductVersion
    from integration_hub.runtime.models import Delivery
    from integration_hub.workflows.catalog import versions_approve

    platform, stripe_api, catalog = _catalog_connect(args.events, json.loads(args.config))
    approver = get_user_model().objects.create_superuser("bench-approver", "approver@example.com", None)
    expected = args.events * 5

    start = time.perf_counter()
    drafts = _catalog_pull_drafts(catalog, args.events)
    pulled = time.perf_counter()
    done, skipped = versions_approve(drafts, user=approver)
    approved = time.perf_counter()
    if done != expected:
        raise SystemExit(f"approved {done} of {expected}: {skipped[:3]}")
    deadline = time.monotonic() + 4 * 3600
    released = CatalogVersion.Status.RELEASED
    while (ProductVersion.objects.exclude(status=released).exists()
           or PriceVersion.objects.exclude(status=released).exists()):
        if Delivery.objects.filter(status="dead").exists():
            raise SystemExit(f"a release died: {Delivery.objects.filter(status='dead').first().last_error}")
        if time.monotonic() > deadline:
            raise SystemExit("the release did not finish")
        time.sleep(0.2)
    end = time.perf_counter()
    platform.stop()
    stripe_api.stop()
    print(json.dumps({"seconds": end - start, "pull": pulled - start, "approve": approved - pulled,
                      "release": end - approved, "versions": expected, "deliveries": Delivery.objects.count()}))


def _tryton_connection(config: str):
    """Point the hub's ERP role at the Tryton of ``--config``, with one post at a time (its
    strict invoice sequence refuses concurrent posts), and return the connection."""
    from connectors.models import Connection
    from connectors.services import connection_upsert
    from integration_hub.runtime.models import AdmissionPolicy

    spec = json.loads(config)
    Connection.objects.filter(role="erp").exclude(name="tryton").update(is_active=False)
    tryton = connection_upsert(name="tryton", vendor="tryton", role="erp", config=spec["config"],
                               credentials=spec["credentials"])
    AdmissionPolicy.objects.update_or_create(connection=tryton, defaults={"max_concurrency": 1})
    return tryton


def step_backlog_setup(args) -> None:
    """The Tryton connection, in a maintenance window for the next hour."""
    _django()
    from django.utils import timezone

    from integration_hub.runtime.models import MaintenanceWindow

    now = timezone.now()
    MaintenanceWindow.objects.create(connection=_tryton_connection(args.config), starts_at=now - dt.timedelta(minutes=1),
                                     ends_at=now + dt.timedelta(hours=1), reason="month-end ERP upgrade")


def step_backlog_drain(args) -> None:
    """Wait until the ``--events`` posts are held by the window, end it as the admin's "End
    now" does, and time until the last is posted; then count the ERP's invoices by reference."""
    _django()
    from connectors.tryton.connector import TrytonConnector
    from integration_hub.runtime.models import Delivery, DeliveryAttempt, MaintenanceWindow
    from integration_hub.runtime.services import maintenance_window_end, sweep

    posts = Delivery.objects.filter(action="invoice.post")
    deadline = time.monotonic() + 600
    while posts.filter(status="held").count() < args.events:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {posts.filter(status='held').count()} of {args.events} posts were held")
        time.sleep(0.2)
    window = MaintenanceWindow.objects.get()
    start = time.perf_counter()
    maintenance_window_end(window, user=None, reason="benchmark: the ERP is back")
    deadline, swept = time.monotonic() + 3600, time.monotonic()
    while posts.filter(status="posted").count() < args.events:
        if posts.filter(status="dead").exists():
            raise SystemExit(f"a post died: {posts.filter(status='dead').first().last_error}")
        if time.monotonic() > deadline:
            raise SystemExit("the backlog did not drain")
        if time.monotonic() - swept > 15:  # beat's sweep, for what the broker may have lost
            sweep()
            swept = time.monotonic()
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    sizes = collections.Counter(
        int(message.rsplit(" ", 1)[-1]) if message.startswith("posted in a batch of") else 1
        for message in DeliveryAttempt.objects.filter(delivery__action="invoice.post", outcome="posted")
        .values_list("message", flat=True))
    spec = json.loads(args.config)
    connector = TrytonConnector(config=spec["config"], credentials=spec["credentials"])
    references = [row["reference"] for company in spec["config"]["companies"].values()
                  for row in connector.client.call(
                      "account.invoice", "search_read", [("company", "=", company), ("type", "=", "out")], 0, None,
                      None, ["reference"], context={"company": company})]
    print(json.dumps({"seconds": seconds, "rate": args.events / seconds, "erp_invoices": len(references),
                      "references": len(set(references)),
                      "batches": {size: count // size for size, count in sorted(sizes.items(), reverse=True)}}))


def step_backlog_direct(args) -> None:
    """The fastest a script can post the same invoices into Tryton (``--config``), each
    invoice's values prepared before the clock starts (the hub's own mapping): ``--tasks``
    of them created and posted one at a time (a party created when first seen), and all
    ``--events`` with their parties created in one call, then in batches (one create and one
    post call each) of each size in ``--marks``, each size on its share of the ``--events``.
    Prints the rates."""
    _django()
    from connectors.stripe.mapping import invoice_from_stripe
    from connectors.tryton import mapping
    from connectors.tryton.connector import TrytonConnector

    spec = json.loads(args.config)
    connector = TrytonConnector(config=spec["config"], credentials=spec["credentials"])
    client = connector.client
    feeder = _StripeFeeder(args.seed)
    entity = {"USD": "US", "EUR": "EU", "JPY": "JP"}
    invoices = []
    for i in range(args.events + args.tasks):
        payload = feeder.sandbox.finalize(feeder.sandbox.invoice(
            feeder.customers[i % 200], [("Seats", 1 + i % 5, 2500), ("Support", 1, 1000)],
            currency=(["usd"] * 7 + ["eur"] * 2 + ["jpy"])[i % 10]))
        invoice = invoice_from_stripe(payload)
        invoices.append(invoice.model_copy(update={
            "customer": invoice.customer.model_copy(update={"canonical_id": 1 + i % 200})}))
    # (company, invoice, the values but for the party), in the order they are posted.
    prepared = [(connector._company(entity[invoice.currency]), invoice,
                 connector._draft(connector._company(entity[invoice.currency]), invoice, entity[invoice.currency], None))
                for invoice in invoices]
    parties: dict[str, tuple[int, int]] = {}

    def party(customer) -> tuple[int, int]:
        code = mapping.party_code(customer)
        if code not in parties:
            party_id, = client.call("party.party", "create", [mapping.party_values(customer)])
            record, = client.call("party.party", "read", [party_id], ["addresses"])
            parties[code] = (party_id, record["addresses"][0])
        return parties[code]

    start = time.perf_counter()
    for company, invoice, draft in prepared[args.events:]:
        party_id, address_id = party(invoice.customer)
        invoice_id, = client.call("account.invoice", "create", [draft(party_id=party_id, address_id=address_id)],
                                  context={"company": company})
        client.call("account.invoice", "post", [invoice_id], context={"company": company})
    sequential = args.tasks / (time.perf_counter() - start)

    sizes: list[int] = json.loads(args.marks)
    share = args.events // len(sizes)
    batched: dict[int, float] = {}
    for number, size in enumerate(sizes):
        mine = prepared[number * share:(number + 1) * share]
        start = time.perf_counter()
        customers = {mapping.party_code(invoice.customer): invoice.customer for _, invoice, _ in mine}
        customers = {code: customer for code, customer in customers.items() if code not in parties}
        if customers:
            client.call("party.party", "create", [mapping.party_values(customer) for customer in customers.values()])
            parties.update({record["code"]: (record["id"], record["addresses"][0]) for record in client.call(
                "party.party", "search_read", [("code", "in", list(customers))], 0, None, None,
                ["code", "addresses"])})
        for first in range(0, share, size):
            by_company: dict[int, list] = {}
            for company, invoice, draft in mine[first:first + size]:
                party_id, address_id = parties[mapping.party_code(invoice.customer)]
                by_company.setdefault(company, []).append(draft(party_id=party_id, address_id=address_id))
            for company, values in by_company.items():
                ids = client.call("account.invoice", "create", values, context={"company": company})
                client.call("account.invoice", "post", ids, context={"company": company})
        batched[size] = share / (time.perf_counter() - start)
    print(json.dumps({"sequential": sequential, "batched": batched}))


STEPS = {
    "_backlog_setup": step_backlog_setup, "_backlog_drain": step_backlog_drain,
    "_backlog_direct": step_backlog_direct,
    "_catalog_baseline": step_catalog_baseline, "_catalog_hub": step_catalog_hub,
    "_catalog_release": step_catalog_release,
    "_usage_setup": step_usage_setup, "_usage_aggregate": step_usage_aggregate,
    "_setup": step_setup, "_slow_erp_setup": step_slow_erp_setup, "_feed": step_feed,
    "_trickle": step_trickle, "_usage_receive": step_usage_receive,
    "_noop_send": step_noop_send, "_load_history": step_load_history, "_history_marks": step_history_marks,
    "_history_trim": step_history_trim, "_sweep": step_sweep,
    "_reconcile_seed": step_reconcile_seed, "_reconcile_run": step_reconcile_run,
}


# --------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in STEPS:
        parser = argparse.ArgumentParser(prog=f"benchmarks.run {argv[0]}")
        parser.add_argument("--events", type=int, default=0)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--tasks", type=int, default=0)
        parser.add_argument("--rows", type=int, default=0)
        parser.add_argument("--repeat", type=int, default=5)
        parser.add_argument("--marks", default="{}")
        parser.add_argument("--latency-ms", type=int, default=200)
        parser.add_argument("--cap", type=int, default=4)
        parser.add_argument("--config", default="{}")
        parser.add_argument("--customers", type=int, default=0)
        parser.add_argument("--rate", type=float, default=4.0)
        parser.add_argument("--while-loading", action="store_true")
        parser.add_argument("--path", default="")
        STEPS[argv[0]](parser.parse_args(argv[1:]))
        return 0

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="small counts, the same code paths (CI)")
    parser.add_argument("--pipeline-events", type=int, default=0,
                        help="events per pipeline run (the stated figure is 20000: about N / rate seconds per run)")
    parser.add_argument("--only", default="",
                        help="comma-separated: ingest,pipeline,slow,history,usage,catalog,reconcile,isolation,"
                             "scaleout,backlog,profile")
    parser.add_argument("--catalog-skus", type=int, default=0,
                        help="SKUs of the catalog full sync and release (the stated figure and the full plan: 2000; smoke 8)")
    parser.add_argument("--backlog-batch", type=int, default=0,
                        help="the largest batch of the hub in the backlog part (default: the Tryton connector's"
                             " batch_size, 100)")
    parser.add_argument("--backlog-timeout", type=float, default=0,
                        help="the hub's Tryton read timeout in the backlog part, seconds (default: the connector's, 30)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the earlier results' figures this run does not measure (with --only)")
    parser.add_argument("--output", default="", help="where the results go (default: benchmarks/, or the"
                        " run's log folder for --smoke)")
    parser.add_argument("--broker", default="", help="the Celery broker's URL (default: BENCH_REDIS); amqp://…"
                        " runs on RabbitMQ with quorum queues (docs/scaling.md)")
    parser.add_argument("--bulk-nice", type=int, default=0, help="finance isolation: run the bulk side's processes"
                        " at this CPU niceness (0-19; the finance worker stays at 0)")
    args = parser.parse_args(argv)
    global BROKER, BULK_NICE
    BROKER, BULK_NICE = args.broker or BROKER, args.bulk_nice
    plan = SMOKE if args.smoke else FULL
    if args.pipeline_events:
        plan = dataclasses.replace(plan, pipeline_events=args.pipeline_events)
    if args.catalog_skus:
        plan = dataclasses.replace(plan, catalog_skus=args.catalog_skus)
    if args.backlog_batch or args.backlog_timeout:
        plan = dataclasses.replace(plan, hub_batch=args.backlog_batch, hub_timeout=args.backlog_timeout)
    only = {part for part in args.only.split(",") if part}
    logdir = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    out = Path(args.output or (logdir if args.smoke else BENCH_DIR))
    out.mkdir(parents=True, exist_ok=True)
    log(f"{plan.name} plan; process logs in {logdir}")
    started = time.perf_counter()
    suite = Suite(plan, logdir)
    suite.setup_template()
    try:
        for name, run in (("ingest", suite.ingest), ("pipeline", suite.pipeline), ("slow", suite.slow_erp),
                          ("history", suite.history), ("usage", suite.usage), ("catalog", suite.catalog),
                          ("reconcile", suite.reconcile), ("isolation", suite.isolation),
                          ("scaleout", suite.scaleout), ("backlog", suite.backlog), ("profile", suite.profile)):
            if not only or name in only:
                run()
        if not only or {"ingest", "pipeline"} <= only:
            suite.memory()
    finally:
        queue_purge()
        db_drop(TEMPLATE_DB)
    seconds = time.perf_counter() - started
    results_md = out / ("RESULTS.md" if plan.name == "full" else "RESULTS-smoke.md")
    results_json = out / ("results.json" if plan.name == "full" else "results-smoke.json")
    if args.merge:
        carry_over(suite, results_json)
    write_report(suite, results_md, results_json, seconds)
    log(f"wrote {results_md} and {results_json} in {seconds:.0f} s")
    missing = [key for key in FIGURES if key not in suite.figures]
    if missing and not only:
        log(f"FAIL: figures missing: {', '.join(missing)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
