"""Stripe webhook authentication and event parsing.

``verify_signature`` follows stripe-python's ``WebhookSignature.verify_header``:
the same header parsing, the same order of checks and the same messages, so an
operator can match a rejection in the hub's logs with Stripe's documentation.
The one addition is a list of secrets, tried in turn, so an endpoint secret can be
rolled without dropping events signed with the previous one.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.base import ReceivedEvent
from connectors.errors import InvalidSignature, MalformedPayload
from connectors.payloads import MAX_HEADER_DIGITS, epoch_datetime, json_loads

SIGNATURE_HEADER = "Stripe-Signature"
EXPECTED_SCHEME = "v1"
DEFAULT_TOLERANCE = 300


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    """Hex HMAC-SHA256 of ``"{timestamp}.{payload}"`` keyed with ``secret``.

    The raw bytes are signed as received: Stripe signs the UTF-8 body, and
    re-encoding a decoded body could differ from what was sent.
    """
    signed = f"{timestamp}.".encode() + payload
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def _parse_header(header: str) -> tuple[int, list[str]]:
    # Same rules as stripe-python: items split on "," then on the first "=";
    # ``t`` must be an integer; every ``v1`` item is a candidate; other schemes
    # (v0 is Stripe's test-only scheme) are ignored.
    try:
        items = [item.split("=", 1) for item in header.split(",")]
        raw_timestamp = [item[1] for item in items if item[0] == "t"][0]
        if len(raw_timestamp) > MAX_HEADER_DIGITS:
            raise ValueError(raw_timestamp)
        timestamp = int(raw_timestamp)
        signatures = [item[1] for item in items if item[0] == EXPECTED_SCHEME]
    except (IndexError, ValueError):
        raise InvalidSignature("Unable to extract timestamp and signatures from header") from None
    return timestamp, signatures


def verify_signature(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Return if ``header`` is a valid Stripe-Signature for ``payload``; else raise.

    Raises InvalidSignature, in this order: header missing; header unparseable; no
    ``v1`` signature; no ``v1`` signature matches any of ``secrets``; timestamp
    further than ``tolerance`` seconds from now, in the past or the future (checked
    only after a match, and skipped when ``tolerance`` is 0). stripe-python accepts
    any future timestamp; the hub does not, so a signature captured with a clock
    skewed forward cannot be replayed for days.
    Messages never contain a secret or an expected signature.
    """
    if not header:
        raise InvalidSignature(f"Missing {SIGNATURE_HEADER} header")
    timestamp, signatures = _parse_header(header)
    if not signatures:
        raise InvalidSignature(f"No signatures found with expected scheme {EXPECTED_SCHEME}")

    if isinstance(secrets, str):
        # A lone secret string would otherwise be iterated character by character.
        secrets = [secrets]
    matched = False
    for secret in secrets:
        if not secret:
            continue
        expected = compute_signature(payload, secret, timestamp)
        # No early exit: every candidate is compared so timing does not reveal
        # which secret or which candidate matched.
        for candidate in signatures:
            if hmac.compare_digest(expected.encode(), candidate.encode("utf-8", "replace")):
                matched = True
    if not matched:
        raise InvalidSignature("No signatures found matching the expected signature for payload")

    current = time.time() if now is None else now
    if tolerance and abs(current - timestamp) > tolerance:
        raise InvalidSignature(f"Timestamp outside the tolerance zone ({timestamp})")


def _require(container: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: str) -> Any:
    value = container.get(key)
    # bool is an int subclass; a boolean ``created`` is not a timestamp.
    if value is None or isinstance(value, bool) or not isinstance(value, kind):
        raise MalformedPayload(f"{path}: missing or not a {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {dict: "object", str: "string", int: "integer"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def parse_event(payload: bytes) -> ReceivedEvent:
    """Parse one Stripe (v1 "snapshot") event; raise MalformedPayload otherwise.

    Requires ``id`` (``evt_...``), ``object == "event"``, ``type``, ``created``
    (Unix seconds) and ``data.object`` with ``object`` and ``id``. Thin v2 events
    (``object == "v2.core.event"``) are refused, as stripe-python's
    ``construct_event`` does: they carry no snapshot to map. The subject is
    ``"{data.object.object}:{data.object.id}"``, e.g. ``"invoice:in_123"``.
    """
    event = json_loads(payload)
    if not isinstance(event, dict):
        raise MalformedPayload(f"body is a JSON {type(event).__name__}, not an event object")

    kind = event.get("object")
    if kind == "v2.core.event" or (isinstance(kind, str) and kind.startswith("v2.")):
        raise MalformedPayload("thin (v2) events are not supported; configure a snapshot event destination")
    if kind != "event":
        raise MalformedPayload(f"object: expected 'event', got {kind!r}")

    event_id = _require(event, "id", str, "id")
    if not event_id.startswith("evt_"):
        raise MalformedPayload(f"id: {event_id!r} is not an event id (evt_...)")
    event_type = _require(event, "type", str, "type")
    if not event_type:
        raise MalformedPayload("type: empty")
    created = _require(event, "created", int, "created")
    data = _require(event, "data", dict, "data")
    obj = _require(data, "object", dict, "data.object")
    obj_id = _require(obj, "id", str, "data.object.id")
    obj_kind = _require(obj, "object", str, "data.object.object")

    return ReceivedEvent(
        external_id=event_id,
        type=event_type,
        subject=f"{obj_kind}:{obj_id}",
        payload=event,
        occurred_at=epoch_datetime(created, field="created"),
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # Plain dicts are case-sensitive; HTTP header names are not.
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


class StripeWebhookReceiver:
    """WebhookReceiver for Stripe: one event per request, signed with Stripe-Signature."""

    def __init__(self, *, tolerance: int = DEFAULT_TOLERANCE):
        self.tolerance = tolerance

    def verify(
        self, *, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], method: str = "POST", url: str = ""
    ) -> None:
        verify_signature(body, _header(headers, SIGNATURE_HEADER), secrets, tolerance=self.tolerance)

    def parse(self, body: bytes) -> list[ReceivedEvent]:
        return [parse_event(body)]
