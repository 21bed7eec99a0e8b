"""The admission governor: one per connection, consulted before every outbound call.

It combines a circuit breaker, a token bucket, a concurrency cap, the target's own
"wait" signals (Retry-After) and maintenance windows. The decision logic is a pure
function of a small JSON state (``admit`` / ``release`` below); a store makes each
read-decide-write atomic for all workers — Redis (WATCH/MULTI) when configured,
else a row lock in the database.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connectors.cache import TTL_SECONDS, cached
from integration_hub.runtime.models import AdmissionPolicy, GovernorState, MaintenanceWindow

State = dict[str, Any]


class GovernorUnavailable(RuntimeError):
    """The governor's shared state cannot be read or written right now."""


@dataclass(frozen=True)
class Policy:
    rate_per_second: float | None = None
    burst: int = 1
    max_concurrency: int | None = None
    failure_threshold: int = 5
    open_seconds: float = 30.0

    @classmethod
    def for_connection(cls, connection_id: int) -> Policy:
        return cached(("policy", connection_id), lambda: cls._load(connection_id))

    @classmethod
    def _load(cls, connection_id: int) -> Policy:
        row = AdmissionPolicy.objects.filter(connection_id=connection_id).first()
        if row is None:
            return cls()
        return cls(row.rate_per_second, max(row.burst, 1), row.max_concurrency, row.failure_threshold,
                   float(row.open_seconds))


@dataclass(frozen=True)
class Decision:
    admitted: bool
    reason: str = ""
    retry_at: float = 0.0  # epoch seconds; when a held call may try again


# ---------------------------------------------------------------- pure logic


# How the hold reason of a delivery held for a maintenance window begins.
MAINTENANCE_HOLD = "maintenance window"
# A delivery held by the concurrency cap is woken by the release of a slot (or rides in
# a batch); this is only the fallback if that wake-up is lost (a worker killed holding
# the slot). Longer than the re-enqueue window, so the sweeper sends it rather than a
# countdown: a backlog of hundreds waiting on one slot costs no churn of held messages.
CAP_WAIT_SECONDS = 120.0


def admit(state: State, policy: Policy, *, now: float, token: str, lease: float,
          waiter: int | None = None, calls: int = 1) -> Decision:
    """Decide whether one call may go out now; on admission, record it in ``state``
    (a concurrency slot, a token spent, the half-open probe). A call refused for the
    concurrency cap queues ``waiter`` to be woken when a slot frees.

    A batch is admitted as the ``calls`` it makes to the target: one concurrency slot,
    and ``calls`` tokens of the rate. One larger than the burst goes out once the
    bucket is full and leaves it in debt, which the calls after it wait out."""
    slots = state.get("slots", {})
    if any(expiry <= now for expiry in slots.values()):
        slots = state["slots"] = {t: expiry for t, expiry in slots.items() if expiry > now}

    blocked_until = state.get("blocked_until", 0.0)
    if blocked_until > now:
        return Decision(False, "the target asked to wait (Retry-After)", blocked_until)

    probing = False
    if state.get("failures", 0) >= policy.failure_threshold:
        opened_until = state.get("opened_until", 0.0)
        if opened_until > now:
            return Decision(False, f"circuit open after {state['failures']} consecutive failures", opened_until)
        probe = state.get("probe")
        if probe and slots.get(probe, 0) > now:
            return Decision(False, "circuit half-open: a probe call is in progress", now + policy.open_seconds)
        probing = True

    if policy.max_concurrency is not None and len(slots) >= policy.max_concurrency:
        if waiter is not None and waiter not in state.setdefault("waiters", []):
            state["waiters"].append(waiter)
        return Decision(False, f"concurrency cap of {policy.max_concurrency} reached",
                        min(min(slots.values()), now + CAP_WAIT_SECONDS))

    if policy.rate_per_second:
        elapsed = max(now - state.get("refilled_at", now), 0.0)
        tokens = min(float(policy.burst), state.get("tokens", float(policy.burst)) + elapsed * policy.rate_per_second)
        needed = min(float(calls), float(policy.burst))
        if tokens < needed:
            state["tokens"], state["refilled_at"] = tokens, now
            return Decision(False, "rate limit", now + (needed - tokens) / policy.rate_per_second)
        state["tokens"], state["refilled_at"] = tokens - calls, now

    # Slots are only kept where something needs them: a cap, or the probe's lease.
    if policy.max_concurrency is not None or probing:
        state.setdefault("slots", {})[token] = now + lease
    if probing:
        state["probe"] = token
    return Decision(True)


def release(state: State, policy: Policy, *, now: float, token: str, outcome: str,
            retry_after: float | None = None, settled: Collection[int] = ()) -> int | None:
    """Record how an admitted call ended: ``success``, ``failure`` (the target is
    unwell: timeout, 5xx, connection error), ``rate_limited`` or ``neutral`` (the
    target answered; the request itself was wrong). Returns a waiter to wake, if the
    call freed a concurrency slot someone is queued for. ``settled`` waiters were
    carried by the call (a batch took them along) and leave the queue."""
    freed = state.get("slots", {}).pop(token, None) is not None
    if settled and state.get("waiters"):
        state["waiters"] = [waiter for waiter in state["waiters"] if waiter not in settled]
    if state.get("probe") == token:
        state["probe"] = None
    if outcome == "success":
        if state.get("failures") or state.get("opened_until"):
            state["failures"], state["opened_until"] = 0, 0.0
    elif outcome == "failure":
        state["failures"] = state.get("failures", 0) + 1
        if state["failures"] >= policy.failure_threshold:
            state["opened_until"] = now + policy.open_seconds
    elif outcome == "rate_limited" and retry_after:
        state["blocked_until"] = max(state.get("blocked_until", 0.0), now + retry_after)
    if freed and state.get("waiters"):
        return state["waiters"].pop(0)
    return None


def hand_over(state: State, policy: Policy, *, now: float, waiter: int, lease: float, calls: int = 1) -> str | None:
    """Admit the call of ``waiter`` (a delivery just woken by a freed slot) on its
    behalf, as ``calls`` calls, so the slot passes to it without a second admission:
    returns the slot's token, or None if the call may not go out now (then it is woken
    the usual way and its own admission says why)."""
    token = f"{waiter}:handed:{now}"
    return token if admit(state, policy, now=now, token=token, lease=lease, calls=calls).admitted else None


# ---------------------------------------------------------------- stores


class Store(Protocol):
    def update(self, connection_id: int, change: Callable[[State], Any]) -> Any:
        """Apply ``change`` to the connection's state atomically; return its result."""

    def read(self, connection_id: int) -> State: ...

    def clear(self) -> None: ...


class RedisStore:
    def __init__(self, url: str):
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    @staticmethod
    def _key(connection_id: int) -> str:
        # Namespaced by database: hubs sharing a Redis never share a connection's state.
        return f"hub:governor:{settings.DATABASES['default']['NAME']}:{connection_id}"

    def clear(self) -> None:
        """Forget every connection's state in this namespace (tests, after a restore)."""
        for key in self.client.scan_iter(match=self._key(0)[:-1] + "*"):
            self.client.delete(key)

    def update(self, connection_id: int, change: Callable[[State], Any]) -> Any:
        import redis

        key, outcome = self._key(connection_id), []
        try:
            raw = self.client.get(key)
        except redis.RedisError as exc:
            raise GovernorUnavailable(str(exc)) from exc
        # Most calls change nothing (circuit closed, no limits): one round trip.
        state = json.loads(raw) if raw else {}
        result = change(state)
        if state == (json.loads(raw) if raw else {}):
            return result

        def apply(pipe) -> None:
            raw = pipe.get(key)
            state = json.loads(raw) if raw else {}
            result = change(state)
            pipe.multi()
            pipe.set(key, json.dumps(state), ex=86400)
            outcome[:] = [result]

        try:
            self.client.transaction(apply, key)
        except redis.RedisError as exc:
            raise GovernorUnavailable(str(exc)) from exc
        return outcome[0]

    def read(self, connection_id: int) -> State:
        import redis

        try:
            raw = self.client.get(self._key(connection_id))
        except redis.RedisError as exc:
            raise GovernorUnavailable(str(exc)) from exc
        return json.loads(raw) if raw else {}


class DatabaseStore:
    def update(self, connection_id: int, change: Callable[[State], Any]) -> Any:
        with transaction.atomic():
            row, _ = GovernorState.objects.select_for_update().get_or_create(connection_id=connection_id)
            before = json.dumps(row.state, sort_keys=True)
            result = change(row.state)
            if json.dumps(row.state, sort_keys=True) != before:
                row.save(update_fields=["state"])
            return result

    def read(self, connection_id: int) -> State:
        row = GovernorState.objects.filter(connection_id=connection_id).first()
        return row.state if row else {}

    def clear(self) -> None:
        GovernorState.objects.all().delete()


@cache
def store() -> Store:
    url = settings.HUB_REDIS_URL
    return RedisStore(url) if url else DatabaseStore()


# ---------------------------------------------------------------- the governor


def _maintenance(connection_id: int, now: dt.datetime) -> MaintenanceWindow | None:
    # Cached with the windows that start within the cache's lifetime, so none is missed.
    horizon = dt.timedelta(seconds=TTL_SECONDS)
    windows = cached(("windows", connection_id), lambda: list(MaintenanceWindow.objects.filter(
        connection_id=connection_id, starts_at__lte=timezone.now() + horizon, ends_at__gt=timezone.now())))
    return next((w for w in windows if w.starts_at <= now < w.ends_at), None)


def _slot_lease() -> float:
    # A slot outlives the task holding it, so it never frees while its call still runs.
    return float(settings.CELERY_TASK_TIME_LIMIT + 10)


def governor_admit(connection_id: int, *, token: str, waiter: int | None = None, calls: int = 1) -> Decision:
    """May a call (or a batch of ``calls`` calls) to this connection go out now? Held
    calls get a reason and a time."""
    now = timezone.now()
    window = _maintenance(connection_id, now)
    if window is not None:
        # Spread the backlog over the drain period so the target is not hit at once.
        drain = random.uniform(0, settings.HUB_MAINTENANCE_DRAIN_SECONDS)
        reason = f"{MAINTENANCE_HOLD} until {window.ends_at:%Y-%m-%d %H:%M} UTC {window.reason}".strip()
        return Decision(False, reason, window.ends_at.timestamp() + drain)
    policy, lease = Policy.for_connection(connection_id), _slot_lease()
    return store().update(
        connection_id,
        lambda state: admit(state, policy, now=time.time(), token=token, lease=lease, waiter=waiter, calls=calls),
    )


@dataclass(frozen=True)
class Woken:
    """A delivery queued for the slot a call freed. With a ``token`` the slot is
    already its own (handed over); without one it must be woken and admitted."""

    connection_id: int
    delivery_id: int
    token: str | None = None


def governor_release(connection_id: int, *, token: str, outcome: str, retry_after: float | None = None,
                     hand_over_slot: bool = False, calls: int = 1, settled: Collection[int] = ()) -> Woken | None:
    """Record the call's end; returns the delivery waiting for the freed slot, if any.
    With ``hand_over_slot`` the slot passes to that delivery in the same write, admitted
    as ``calls`` calls (the freed call's: deliveries to one connection batch alike),
    unless a maintenance window, the circuit, a Retry-After or the rate says not now.
    ``settled``: deliveries the call carried along, no longer waiting."""
    policy, lease = Policy.for_connection(connection_id), _slot_lease()
    hand_over_slot = hand_over_slot and _maintenance(connection_id, timezone.now()) is None

    def change(state: State) -> Woken | None:
        now = time.time()
        waiter = release(state, policy, now=now, token=token, outcome=outcome, retry_after=retry_after,
                         settled=settled)
        if waiter is None:
            return None
        handed = hand_over(state, policy, now=now, waiter=waiter, lease=lease, calls=calls) if hand_over_slot else None
        return Woken(connection_id, waiter, handed)

    return store().update(connection_id, change)


def governor_status(connection_id: int) -> dict[str, Any]:
    """A readable snapshot for the admin and the API."""
    state, now = store().read(connection_id), time.time()
    policy = Policy.for_connection(connection_id)
    failures = state.get("failures", 0)
    if failures >= policy.failure_threshold:
        circuit = "open" if state.get("opened_until", 0) > now else "half-open"
    else:
        circuit = "closed"
    return {
        "circuit": circuit,
        "consecutive_failures": failures,
        "calls_in_flight": sum(1 for expiry in state.get("slots", {}).values() if expiry > now),
        "blocked_for_seconds": max(round(state.get("blocked_until", 0) - now, 1), 0),
    }
