"""Serve a vendor sandbox as a real HTTP server on 127.0.0.1 (background thread).

A Celery worker is another process; it reaches a sandbox the way it reaches the
vendor, over HTTP. Sandboxes describe their API as ``handle(request) -> Response``;
this module does the WSGI plumbing and nothing vendor-specific.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

_REASONS = {200: "OK", 201: "Created", 204: "No Content", 300: "Multiple Choices", 400: "Bad Request",
            401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]  # the last value of each parameter
    headers: dict[str, str]  # lower-case names
    body: bytes
    query_pairs: list[tuple[str, str]] = field(default_factory=list)  # every parameter, repeats kept

    def query_values(self, name: str) -> list[str]:
        """Every value of a query parameter, in order (``?p=a&p=b`` → ``["a", "b"]``)."""
        return [value for key, value in self.query_pairs if key == name]

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.body.decode(), keep_blank_values=True))


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-serialisable, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent as is instead of ``body`` (a non-JSON answer, for fault tests)


@dataclass
class Fault:
    """A canned answer for the next matching request (fault injection)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    method: str | None = None
    path_contains: str = ""


class FaultQueue:
    """Faults a test or the demo queues; ``take`` consumes the first that matches."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def take(self, request: Request) -> Response | None:
        with self._lock:
            for fault in self._faults:
                if (fault.method in (None, request.method)) and fault.path_contains in request.path:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return Response(fault.status, fault.body, dict(fault.headers))
        return None


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


def wsgi_app(handle: Callable[[Request], Response]) -> Callable:
    def app(environ: dict, start_response: Callable) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
                   if key.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        pairs = urllib.parse.parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        request = Request(
            method=environ["REQUEST_METHOD"],
            path=urllib.parse.unquote(environ.get("PATH_INFO", "")),
            query=dict(pairs),
            headers=headers,
            body=environ["wsgi.input"].read(length) if length else b"",
            query_pairs=pairs,
        )
        response = handle(request)
        if response.raw is not None:
            start_response(f"{response.status} {_REASONS.get(response.status, 'Status')}",
                           list(response.headers.items()))
            return [response.raw]
        payload = b"" if response.body is None else json.dumps(response.body).encode()
        out_headers = {"Content-Type": "application/json", **response.headers} if payload else dict(response.headers)
        start_response(f"{response.status} {_REASONS.get(response.status, 'Status')}", list(out_headers.items()))
        return [payload]

    return app


class SandboxServer:
    """``handle`` served on ``url`` until ``stop``; usable as a context manager."""

    def __init__(self, handle: Callable[[Request], Response], *, host: str = "127.0.0.1", port: int = 0):
        self._server = make_server(host, port, wsgi_app(handle), server_class=_ThreadingServer,
                                   handler_class=_QuietHandler)
        # A short poll interval: stop() (shutdown) waits for the loop to notice, 0.5 s by default.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> SandboxServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Served:
    """Mixin for a sandbox with a ``handle(request) -> Response`` method: serve it on
    127.0.0.1 with ``serve()``, read its ``url``, ``stop()`` it."""

    _server: SandboxServer | None = None

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def serve(self) -> SandboxServer:
        self._server = SandboxServer(self.handle).start()
        return self._server

    @property
    def url(self) -> str:
        assert self._server is not None, "call serve() first"
        return self._server.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
