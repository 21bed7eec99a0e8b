"""Retry timing: exponential backoff with full jitter, Retry-After as a floor."""

from __future__ import annotations

import random

from django.conf import settings


def retry_delay(attempt: int, *, retry_after: float | None = None, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``.

    Full jitter (random between 0 and min(cap, base·2^attempt)) keeps many failing
    deliveries from retrying in lock-step; a vendor's Retry-After is a minimum.
    """
    rng = rng or random
    base, cap = settings.HUB_RETRY_BASE_SECONDS, settings.HUB_RETRY_CAP_SECONDS
    delay = rng.uniform(0, min(cap, base * 2 ** max(attempt, 0)))
    if retry_after is not None:
        delay = max(delay, retry_after + rng.uniform(0, base))
    return delay
