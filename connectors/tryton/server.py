"""A real Tryton server for development, the demo and the end-to-end tests.

Building a configured database takes a minute or more, so it is done once and
cached as a *template*; every server copies the template to a fresh database
(milliseconds) and starts ``trytond`` on a free local port (a few seconds). The
template is a SQLite file in the cache directory, or, with ``--postgres URI`` (a
server Tryton may create databases on, e.g. ``postgresql://postgres@127.0.0.1:5432/``),
a PostgreSQL database that each server clones (``CREATE DATABASE ... TEMPLATE``)
and drops when it stops — Tryton as a production deployment runs it.

    python -m connectors.tryton.server build    # build (or reuse) the template
    python -m connectors.tryton.server serve    # build if needed, serve until Ctrl-C

The binaries are the ones next to ``sys.executable``: Tryton must be installed in
the hub's own environment (``pip install -e '.[erp]'``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from connectors.tryton import setup_db

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE_DIR = PROJECT_ROOT / "var" / "tryton"
MODULES = ("account_invoice", "account_product", "analytic_invoice")
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-secret-pw"

# Legal-entity codes used by the hub's connection config -> company currency in setup_db.
LEGAL_ENTITIES = {"US": "USD", "EU": "EUR", "JP": "JPY"}

INSTALL_HINT = "install the ERP extra into the hub's venv: pip install -e '.[erp]'"


class TrytonNotInstalled(RuntimeError):
    """trytond (or one of its modules) is missing from this Python environment."""


class TrytonServerError(RuntimeError):
    """The template build or the server start failed; the message has the log tail."""


def _binary(name: str) -> Path:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise TrytonNotInstalled(f"{path} not found: {INSTALL_HINT}")
    return path


def trytond_version() -> str:
    try:
        import trytond
    except ImportError as exc:
        raise TrytonNotInstalled(f"cannot import trytond ({exc}): {INSTALL_HINT}") from exc
    return trytond.__version__


def template_key() -> str:
    """Changes whenever the template would come out different: the setup script,
    the trytond version, the module list, and the month (the fiscal year created
    by setup_db is relative to the build date and expires)."""
    digest = hashlib.sha256()
    digest.update(Path(setup_db.__file__).read_bytes())
    digest.update(trytond_version().encode())
    digest.update(" ".join(MODULES).encode())
    digest.update(time.strftime("%Y-%m").encode())
    return digest.hexdigest()[:16]


def template_path(cache_dir: Path, *, postgres: str | None = None) -> Path:
    """The SQLite template file; on PostgreSQL, a marker file named after the
    template database. Either way the setup JSON sits beside it (``.json``)."""
    if postgres:
        return Path(cache_dir) / f"tryton_template_{template_key()}.postgresql"
    return Path(cache_dir) / f"template-{template_key()}.sqlite"


def _pg(postgres: str):
    """An autocommit connection to the server's maintenance database."""
    import psycopg

    return psycopg.connect(postgres.rstrip("/") + "/postgres", autocommit=True, connect_timeout=10)


def _pg_exists(postgres: str, name: str) -> bool:
    with _pg(postgres) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def _pg_drop(postgres: str, name: str) -> None:
    from psycopg import sql

    with _pg(postgres) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _pg_create(postgres: str, name: str, *, template: str | None = None) -> None:
    from psycopg import sql

    statement = sql.SQL("CREATE DATABASE {} ENCODING 'UTF8'").format(sql.Identifier(name))
    if template:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with _pg(postgres) as conn:
        conn.execute(statement)


def _pg_comment(postgres: str, name: str) -> str | None:
    """The database's comment, or None when it has none (or does not exist)."""
    with _pg(postgres) as conn:
        row = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                           [name]).fetchone()
    return row[0] if row else None


def _pg_set_comment(postgres: str, name: str, comment: str) -> None:
    from psycopg import sql

    with _pg(postgres) as conn:
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(comment)))


def _write_config(path: Path, *, db_dir: Path, port: int | None = None, postgres: str | None = None) -> None:
    lines = [
        "[database]",
        f"uri = {postgres}" if postgres else "uri = sqlite://",
        *([] if postgres else [f"path = {db_dir}"]),
        "language = en",
        "",
        "[session]",
        # The default (5 failed logins) turns the wrong-password test into a 429 storm.
        "max_attempt = 100",
        "",
    ]
    if port is not None:
        lines[-1:-1] = ["", "[web]", f"listen = 127.0.0.1:{port}"]
    path.write_text("\n".join(lines) + "\n")


def _clean_env(**extra: str) -> dict[str, str]:
    # TRYTOND_* variables from the caller's shell would mix into our config.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRYTOND_")}
    env.update(extra)
    return env


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _run(cmd: list[str], *, env: dict[str, str], log: Path, cwd: Path) -> str:
    with log.open("a") as log_file:
        log_file.write(f"\n$ {' '.join(cmd)}\n")
        log_file.flush()
        result = subprocess.run(
            cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=log_file, text=True,
        )
        log_file.write(result.stdout)
    if result.returncode != 0:
        raise TrytonServerError(
            f"{' '.join(cmd[:3])}... failed with exit code {result.returncode}; log {log}:\n{_tail(log)}"
        )
    return result.stdout


def _checkpoint(db_file: Path) -> None:
    # Fold any WAL content into the main file so that copying it alone is complete.
    connection = sqlite3.connect(db_file)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def build_template(cache_dir: Path, *, progress: Callable[[str], Any] = print,
                   postgres: str | None = None) -> Path:
    """Return the cached template for the current key, building it if absent (see
    ``template_path``; ``postgres`` builds it on that server).

    The build (trytond-admin init, module activation, setup_db) happens in a
    private temp directory (on PostgreSQL: into the template database, whose comment
    and marker file are written last, so another checkout on the same server adopts
    it instead of building it again); the result is renamed into ``cache_dir`` only when
    complete, so an interrupted build never leaves a usable-looking template.
    The setup JSON is stored as ``<template>.json``. Concurrent builders serialise
    on a lock file. Raises TrytonNotInstalled or TrytonServerError.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = template_path(cache_dir, postgres=postgres)
    info_target = target.with_suffix(".json")

    def ready() -> bool:
        if postgres and not (target.exists() and info_target.exists()):
            # Built on this server from another checkout: its setup JSON is the
            # database's comment, set as the build's last step.
            info = _pg_comment(postgres, target.stem)
            if info:
                info_target.write_text(info)
                target.touch()
        return target.exists() and info_target.exists() and (not postgres or _pg_exists(postgres, target.stem))

    if ready():
        return target
    admin, python = _binary("trytond-admin"), Path(sys.executable)
    with (cache_dir / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready():
            return target
        # Holding the lock, any other build directory is a killed build's leftover.
        for stale in cache_dir.glob(".build-*"):
            shutil.rmtree(stale, ignore_errors=True)
        started = time.monotonic()
        where = f"PostgreSQL database {target.stem}" if postgres else target.name
        progress(f"tryton: building template {where} (about 60-150 s, once per month)")
        with tempfile.TemporaryDirectory(prefix=".build-", dir=cache_dir) as tmp:
            work = Path(tmp)
            db_name = target.stem if postgres else "template"
            db_file = work / f"{db_name}.sqlite"
            if postgres:
                target.unlink(missing_ok=True)
                _pg_drop(postgres, db_name)
                _pg_create(postgres, db_name)
            else:
                db_file.touch()  # the sqlite backend refuses to create the file itself
            conf, passfile, log = work / "trytond.conf", work / "adminpass", work / "build.log"
            _write_config(conf, db_dir=work, postgres=postgres)
            passfile.write_text(ADMIN_PASSWORD + "\n")
            env = _clean_env(
                TRYTOND_CONFIG=str(conf), TRYTONPASSFILE=str(passfile),
                PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
            )
            steps = [
                ("initialising database", [str(admin), "-d", db_name, "--all", "--email", ADMIN_EMAIL]),
                ("activating " + " ".join(MODULES),
                 [str(admin), "-d", db_name, "-u", *MODULES, "--activate-dependencies"]),
                ("configuring companies, charts, taxes and the hub user",
                 [str(python), "-m", "connectors.tryton.setup_db", db_name]),
            ]
            output = ""
            for label, cmd in steps:
                step_started = time.monotonic()
                progress(f"tryton: {label}...")
                output = _run(cmd, env=env, log=log, cwd=PROJECT_ROOT)
                progress(f"tryton: {label}: {time.monotonic() - step_started:.1f} s")
            info = json.loads(output[output.index("{"):])
            info_tmp = work / "info.json"
            info_tmp.write_text(json.dumps(info, indent=1))
            if postgres:
                _pg_set_comment(postgres, db_name, info_tmp.read_text())
                os.replace(info_tmp, info_target)
                target.touch()
            else:
                _checkpoint(db_file)
                os.replace(info_tmp, info_target)
                os.replace(db_file, target)
        progress(f"tryton: template ready in {time.monotonic() - started:.1f} s: {where}")
    return target


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TrytonServer:
    """A ``trytond`` subprocess serving a fresh copy of a template database.

    ``with TrytonServer(template) as server: ...`` starts it and stops it. The
    run directory (config, DB file, ``trytond.log``) is a new temp dir unless
    given; a temp dir is removed on stop. With ``postgres`` (the server the template
    was built on) the copy is a PostgreSQL database named ``<database>_<random>``,
    dropped on stop.
    """

    def __init__(
        self,
        template: Path,
        *,
        run_dir: Path | None = None,
        database: str = "hub",
        port: int | None = None,
        startup_timeout: float = 60.0,
        postgres: str | None = None,
    ):
        self.template = Path(template)
        self.postgres = postgres
        if postgres:
            database = f"{database}_{uuid.uuid4().hex[:8]}"  # one database per server on a shared cluster
        info_file = self.template.with_suffix(".json")
        if not self.template.exists() or not info_file.exists():
            raise TrytonServerError(f"template {self.template} (or its .json) is missing: build it first")
        self.database = database
        # The template was built under another name; ids are what matter.
        self.info: dict[str, Any] = {**json.loads(info_file.read_text()), "database": database}
        self.port = port
        self.startup_timeout = startup_timeout
        self._own_run_dir = run_dir is None
        self.run_dir = Path(run_dir) if run_dir else None
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise TrytonServerError("server not started")
        return f"http://127.0.0.1:{self.port}"

    def connection_config(self) -> dict[str, Any]:
        """The ``config`` of a TrytonConnector pointing at this server."""
        companies = self.info["companies"]
        return {
            "url": self.url,
            "database": self.database,
            "companies": {entity: companies[code] for entity, code in LEGAL_ENTITIES.items()},
        }

    def credentials(self) -> dict[str, str]:
        return {"login": setup_db.HUB_LOGIN, "password": setup_db.HUB_PASSWORD}

    def start(self) -> TrytonServer:
        """Copy the template, start trytond and wait until the database is loaded."""
        if self.process is not None:
            return self
        trytond = _binary("trytond")
        if self.run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="tryton-run-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        db_dir = self.run_dir / "db"
        db_dir.mkdir(exist_ok=True)
        if self.postgres:
            _pg_create(self.postgres, self.database, template=self.template.stem)
        else:
            shutil.copyfile(self.template, db_dir / f"{self.database}.sqlite")
        if self.port is None:
            self.port = _free_port()
        conf = self.run_dir / "trytond.conf"
        _write_config(conf, db_dir=db_dir, port=self.port, postgres=self.postgres)
        self.log_path = self.run_dir / "trytond.log"
        with self.log_path.open("ab") as log:
            # -d preloads the pool; see _wait_ready for why that matters.
            self.process = subprocess.Popen(
                [str(trytond), "-c", str(conf), "-d", self.database],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=_clean_env(), cwd=self.run_dir,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop(keep_run_dir=True)
            raise
        return self

    def _wait_ready(self) -> None:
        # A first `common.db.login` before the pool is loaded breaks the database
        # for the life of the process (trytond 8.2.1), so readiness is probed with
        # a REST request, which loads the pool and answers 401 without a key.
        probe = f"{self.url}/{self.database}/rest/model/res.user"
        deadline = time.monotonic() + self.startup_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise TrytonServerError(
                    f"trytond exited with code {self.process.returncode}; log {self.log_path}:\n"
                    f"{_tail(self.log_path)}"
                )
            try:
                response = httpx.get(probe, timeout=10.0)
            except httpx.TransportError as exc:
                last = repr(exc)
            else:
                if response.status_code == 401:
                    return
                last = f"HTTP {response.status_code}"
            time.sleep(0.2)
        raise TrytonServerError(
            f"trytond not ready after {self.startup_timeout:.0f} s ({last}); log {self.log_path}:\n"
            f"{_tail(self.log_path)}"
        )

    def stop(self, *, keep_run_dir: bool = False) -> None:
        """Terminate the server (kill after 10 s). Safe to call more than once."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if process is not None and self.postgres:
            _pg_drop(self.postgres, self.database)
        if self._own_run_dir and not keep_run_dir and self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> TrytonServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @classmethod
    def from_cache(cls, cache_dir: Path = DEFAULT_CACHE_DIR, *, progress: Callable[[str], Any] = print,
                   postgres: str | None = None, **kwargs: Any) -> TrytonServer:
        """Build (or reuse) the template in ``cache_dir`` (on ``postgres``, if given) and
        return an unstarted server."""
        return cls(build_template(cache_dir, progress=progress, postgres=postgres), postgres=postgres, **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m connectors.tryton.server", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["build", "serve"])
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--run-dir", type=Path, default=None, help="keep the DB and logs here")
    parser.add_argument("--postgres", metavar="URI", default=None,
                        help="run on this PostgreSQL server, e.g. postgresql://postgres@127.0.0.1:5432/")
    args = parser.parse_args(argv)
    try:
        template = build_template(args.cache_dir, postgres=args.postgres)
        if args.command == "build":
            print(template)
            return 0
        with TrytonServer(template, port=args.port, run_dir=args.run_dir, postgres=args.postgres) as server:
            print(f"tryton: serving {server.url} (database {server.database!r}), log {server.log_path}")
            print(json.dumps({"config": server.connection_config(), "credentials": server.credentials()},
                             indent=1))
            print("Ctrl-C to stop")
            with contextlib.suppress(KeyboardInterrupt):
                while server.process is not None and server.process.poll() is None:
                    time.sleep(0.5)
        return 0
    except (TrytonNotInstalled, TrytonServerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
