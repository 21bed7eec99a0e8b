"""Waiting for the hub's own processes in the demo scenarios."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], timeout: float, what: str):
    """Poll until ``predicate()`` is truthy and return it; TimeoutError names ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(0.3)
    raise TimeoutError(f"timed out waiting for {what}")
