"""Bounds on what an inbound payload may hold, checked before anything is stored.

The hub refuses, with a 400 and a reason, what it could not store or read safely:
JSON nested deeper than ``MAX_DEPTH`` (Python's recursion and PostgreSQL's jsonb
both have limits), a NUL character anywhere (PostgreSQL's jsonb and text cannot hold
``\\u0000``: accepting it would make every retry of the vendor fail with a 503), an
inbox id, type or subject longer than its column, and timestamps outside what a
datetime can express. Refusing is deliberate: such a payload cannot be a valid event
of the vendors the hub speaks to, and a 4xx shows up in the vendor's delivery log
instead of looping. The limits are documented in docs/reliability.md.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from connectors.errors import InvalidSignature, MalformedPayload

MAX_DEPTH = 64
# Inbox columns (InboundEvent.external_id, event_type; BusinessTransaction.subject).
MAX_EVENT_ID = 255
MAX_EVENT_TYPE = 100
MAX_SUBJECT = 255
# Seconds since the epoch that datetime can express (0001-01-01 .. 9999-12-31), kept
# within 1970 .. 9999: no vendor event predates the epoch.
MAX_EPOCH_SECONDS = 253402300799
# A timestamp header is epoch seconds or milliseconds: a handful of digits.
MAX_HEADER_DIGITS = 16
# Events one request may carry (a Salesforce change event can name many records).
MAX_EVENTS_PER_REQUEST = 500


def json_loads(body: bytes) -> Any:
    """Decode a JSON body; MalformedPayload for invalid JSON, deep nesting or a NUL."""
    try:
        value = json.loads(body, parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:
        raise MalformedPayload(f"body is nested deeper than {MAX_DEPTH} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedPayload(f"body is not valid JSON: {exc}") from None
    check_storable(value)
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        # 1e309 reads as infinity, which neither jsonb nor an amount can hold.
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def check_storable(value: Any, path: str = "") -> None:
    """Raise MalformedPayload if ``value`` nests deeper than MAX_DEPTH or holds a NUL
    in a key or string. Iterative, so a hostile depth cannot exhaust the stack.

    Every webhook runs this on its payload (``json_loads``, then ``check_event``), so
    the common case, a storable payload, takes a walk that builds no path strings
    (about a tenth of the cost); only a payload it doubts is walked again by
    ``_storable_failure``, which names the offending path."""
    if not _storable(value):
        _storable_failure(value, path)


_SCALARS = frozenset({int, float, bool, type(None)})


def _storable(value: Any) -> bool:
    """False if ``value`` may break a rule of ``check_storable``; never True for one
    that does. Containers only go on the stack; a child at depth d + 1 of a container
    at depth d is too deep when d + 1 > MAX_DEPTH, whatever its type, as in
    ``_storable_failure``."""
    stack: list[tuple[Any, int]] = [((value,), -1)]  # the root as the only child of a depth -1 list
    while stack:
        container, depth = stack.pop()
        if isinstance(container, Mapping):
            if any(isinstance(key, str) and "\x00" in key for key in container):
                return False
            children = container.values()
        else:
            children = container
        if depth + 1 > MAX_DEPTH and len(children):
            return False
        for child in children:
            kind = type(child)
            if kind is str:
                if "\x00" in child:
                    return False
            elif kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind in _SCALARS:
                continue
            elif isinstance(child, str):
                if "\x00" in child:
                    return False
            elif isinstance(child, Mapping | list | tuple):
                stack.append((child, depth + 1))
    return True


def _storable_failure(value: Any, path: str = "") -> None:
    """The reference walk of ``check_storable``: raise MalformedPayload naming where
    ``value`` breaks a rule (returns if it breaks none)."""
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise MalformedPayload(f"body is nested deeper than {MAX_DEPTH} levels (at {where or '$'})")
        if isinstance(item, str):
            if "\x00" in item:
                raise MalformedPayload(f"{where or '$'}: contains a NUL character (\\u0000)")
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if isinstance(key, str) and "\x00" in key:
                    raise MalformedPayload(f"{where or '$'}: a key contains a NUL character (\\u0000)")
                stack.append((child, f"{where}.{key}" if where else str(key), depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{where}[{index}]", depth + 1) for index, child in enumerate(item))


def epoch_datetime(value: Any, *, field: str, millis: bool = False, error: type[Exception] = MalformedPayload
                   ) -> dt.datetime:
    """An aware UTC datetime from epoch seconds (or ``millis``); ``error`` naming
    ``field`` if the value is not an integer or lies outside 1970 .. 9999."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{field}: expected an integer timestamp, got {_short(value)}")
    seconds = value / 1000 if millis and abs(value) < 10**20 else value
    if not 0 <= seconds <= MAX_EPOCH_SECONDS:
        raise error(f"{field}: timestamp {_short(value)} is out of range (1970 .. 9999)")
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


def header_epoch(raw: str, *, header: str) -> int:
    """An integer timestamp header; InvalidSignature if it is not a few digits."""
    text = raw.strip()
    if not text.isdigit() or len(text) > MAX_HEADER_DIGITS or not text.isascii():
        raise InvalidSignature(f"{header} is not an integer timestamp")
    return int(text)


def check_events(source: str, events: list[Any]) -> None:
    """Raise MalformedPayload unless every event of one request fits the inbox."""
    if len(events) > MAX_EVENTS_PER_REQUEST:
        raise MalformedPayload(f"{len(events)} events in one request; the limit is {MAX_EVENTS_PER_REQUEST}")
    for event in events:
        check_event(source, event)


def check_event(source: str, event: Any) -> None:
    """Raise MalformedPayload unless the parsed event fits the inbox's columns."""
    for field, value, limit in (
        ("event id", event.external_id, MAX_EVENT_ID),
        ("event type", event.type, MAX_EVENT_TYPE),
        ("subject", f"{source}:{event.subject}", MAX_SUBJECT),
    ):
        if not isinstance(value, str) or not value:
            raise MalformedPayload(f"{field}: missing")
        if len(value) > limit:
            raise MalformedPayload(f"{field}: {len(value)} characters, more than {limit}")
        if "\x00" in value:
            raise MalformedPayload(f"{field}: contains a NUL character (\\u0000)")
    check_storable(event.payload)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
