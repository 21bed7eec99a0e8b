"""The product platform's ``catalog.changed`` webhook: authentication and parsing.

Signed like Stripe's scheme, under the platform's own header: ``X-Catalog-Signature:
t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``, any number of ``v1``
items (the platform signs with old and new secrets while one is rolled), and a
five-minute tolerance against replays. The body is
``{"id": "evt_…", "type": "catalog.changed", "created": <unix>, "data": {"skus": [...]}}``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence

from connectors.base import ReceivedEvent
from connectors.errors import InvalidSignature, MalformedPayload

SIGNATURE_HEADER = "X-Catalog-Signature"
TOLERANCE = 300
EVENT_TYPES = ("catalog.changed",)


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()


def signature_header(payload: bytes, secrets: Sequence[str], timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={timestamp}", *(f"v1={compute_signature(payload, s, timestamp)}" for s in secrets)])


def verify_signature(payload: bytes, header: str | None, secrets: Sequence[str], *,
                     now: float | None = None) -> None:
    if not header:
        raise InvalidSignature(f"missing {SIGNATURE_HEADER} header")
    try:
        items = [item.split("=", 1) for item in header.split(",")]
        timestamp = int(next(value for key, value in items if key == "t"))
        signatures = [value for key, value in items if key == "v1"]
    except (StopIteration, ValueError):
        raise InvalidSignature(f"unable to read the timestamp and signatures of {SIGNATURE_HEADER}") from None
    if not signatures:
        raise InvalidSignature("no v1 signature in the header")
    now = time.time() if now is None else now
    if abs(now - timestamp) > TOLERANCE:
        raise InvalidSignature(f"timestamp outside the {TOLERANCE} s tolerance")
    for secret in secrets:
        expected = compute_signature(payload, secret, timestamp)
        if any(hmac.compare_digest(expected, candidate) for candidate in signatures):
            return
    raise InvalidSignature("no signature matches the expected one for the payload")


class CatalogWebhookReceiver:
    def verify(self, *, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], method: str,
               url: str) -> None:
        verify_signature(body, headers.get(SIGNATURE_HEADER), secrets)

    def parse(self, body: bytes) -> list[ReceivedEvent]:
        try:
            event = json.loads(body)
        except ValueError as exc:
            raise MalformedPayload(f"not JSON: {exc}") from None
        if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event["id"]:
            raise MalformedPayload("a catalog event needs a string id")
        if event.get("type") not in EVENT_TYPES:
            raise MalformedPayload(f"unknown catalog event type {event.get('type')!r}")
        skus = (event.get("data") or {}).get("skus", [])
        if not isinstance(skus, list) or not all(isinstance(sku, str) for sku in skus):
            raise MalformedPayload("data.skus must be a list of SKUs")
        created = event.get("created")
        occurred = dt.datetime.fromtimestamp(created, tz=dt.UTC) if isinstance(created, int) else None
        return [ReceivedEvent(external_id=event["id"], type=event["type"], subject="catalog:changed",
                              payload=event, occurred_at=occurred)]
