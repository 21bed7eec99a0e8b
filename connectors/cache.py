"""A short-lived per-process cache for admin-edited configuration read on hot paths
(webhook secrets, admission policies, maintenance windows): an edit takes effect
within ``TTL_SECONDS`` in every process, and a busy process reads it once per period."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

TTL_SECONDS = 5.0
_entries: dict[tuple, tuple[float, Any]] = {}


def cached(key: tuple, load: Callable[[], Any]) -> Any:
    now = time.monotonic()
    hit = _entries.get(key)
    if hit is None or hit[0] < now:
        hit = _entries[key] = (now + TTL_SECONDS, load())
    return hit[1]


def clear() -> None:
    _entries.clear()
