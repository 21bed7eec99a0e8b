"""A small HTTP/1.1 load generator for 127.0.0.1 only, bounded in count and time.

Each request is pre-built bytes (so generating signed events costs nothing during the
measurement), sent on a fresh connection (gunicorn's sync workers close after each
response), by ``connections`` concurrent clients until the requests run out or
``duration`` seconds pass, whichever comes first.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

HOST = "127.0.0.1"  # never anything else: loopback only


@dataclass
class LoadResult:
    connections: int
    elapsed: float
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def build_request(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {HOST}:{port}", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() != "content-length"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _one(port: int, request: bytes) -> int:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request)
        await writer.drain()
        status_line = await reader.readline()
        status = int(status_line.split()[1])
        await reader.read()  # Connection: close, so the body ends at EOF
        return status
    finally:
        writer.close()


async def _run(port: int, requests: list[bytes], connections: int, duration: float) -> LoadResult:
    result = LoadResult(connections=connections, elapsed=0.0)
    pending = iter(requests)
    start = time.perf_counter()
    deadline = start + duration

    async def client() -> None:
        for request in pending:
            if time.perf_counter() >= deadline:
                return
            sent = time.perf_counter()
            try:
                status = await asyncio.wait_for(_one(port, request), timeout=30)
            except (TimeoutError, OSError, ValueError, IndexError):
                result.errors += 1
                continue
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if 200 <= status < 300:
                result.latencies.append(time.perf_counter() - sent)
            else:
                result.errors += 1

    await asyncio.gather(*(client() for _ in range(connections)))
    result.elapsed = time.perf_counter() - start
    return result


def run_load(port: int, requests: list[bytes], *, connections: int, duration: float) -> LoadResult:
    """Send ``requests`` to 127.0.0.1:``port``; stops after ``duration`` s at the latest."""
    return asyncio.run(_run(port, requests, connections, duration))
