"""Salesforce change events at the hub's webhook endpoint, through a relay.

Salesforce delivers Change Data Capture over its Pub/Sub API (gRPC) or the legacy
Streaming API (CometD); it has no signed-webhook delivery of its own. The hub's
contract is a small relay that subscribes to ``/data/AccountChangeEvent`` and POSTs
each event, as the streaming JSON envelope
``{"data": {"schema", "payload": {"ChangeEventHeader": {...}, <fields>}, "event": {"replayId"}}, "channel"}``
(or a JSON array of them), to ``/api/webhooks/salesforce/`` with:

* ``X-Hub-Relay-Timestamp``: Unix seconds;
* ``X-Hub-Relay-Signature``: ``v1=<hex HMAC-SHA256(secret, "{timestamp}.{raw body}")>``
  (several ``v1=`` values, comma separated, are allowed during a secret rotation).

Requests older than 300 s are refused (replay protection); the relay's secret is
the connection's ``webhook_secrets``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.base import ReceivedEvent
from connectors.errors import InvalidSignature, MalformedPayload, MappingError
from connectors.payloads import epoch_datetime, header_epoch, json_loads
from connectors.salesforce.mapping import change_id, parse_timestamp

TIMESTAMP_HEADER = "X-Hub-Relay-Timestamp"
SIGNATURE_HEADER = "X-Hub-Relay-Signature"
TOLERANCE = 300
MAX_BATCH = 200
# The business object a change event is about, by sObject (the relay subscribes to
# /data/AccountChangeEvent and /data/OpportunityChangeEvent).
_SUBJECTS = {"Account": "customer", "Opportunity": "order"}


def compute_signature(body: bytes, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The relay's headers for ``body``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: f"v1={compute_signature(body, secret, timestamp)}"}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def verify_signature(
    body: bytes, headers: Mapping[str, str], secrets: Sequence[str], *, tolerance: int = TOLERANCE,
    now: float | None = None,
) -> None:
    raw_timestamp, raw_signature = _header(headers, TIMESTAMP_HEADER), _header(headers, SIGNATURE_HEADER)
    if not raw_timestamp or not raw_signature:
        raise InvalidSignature(f"Missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    timestamp = header_epoch(raw_timestamp, header=TIMESTAMP_HEADER)
    candidates = [part.strip()[3:] for part in raw_signature.split(",") if part.strip().startswith("v1=")]
    if not candidates:
        raise InvalidSignature("No v1 signature in the header")
    if isinstance(secrets, str):
        secrets = [secrets]
    matched = False
    for secret in filter(None, secrets):
        expected = compute_signature(body, secret, timestamp).encode()
        for candidate in candidates:  # no early exit: timing reveals nothing
            if hmac.compare_digest(expected, candidate.encode("utf-8", "replace")):
                matched = True
    if not matched:
        raise InvalidSignature("No signature matches the payload")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InvalidSignature(f"Timestamp outside the tolerance zone ({timestamp})")


def _events_of(envelope: Any, index: int) -> list[ReceivedEvent]:
    path = f"[{index}]"
    if not isinstance(envelope, Mapping) or not isinstance(envelope.get("data"), Mapping):
        raise MalformedPayload(f"{path}: not a change event envelope (no data object)")
    payload = envelope["data"].get("payload")
    header = payload.get("ChangeEventHeader") if isinstance(payload, Mapping) else None
    if not isinstance(header, Mapping):
        raise MalformedPayload(f"{path}.data.payload.ChangeEventHeader: missing")
    entity, change_type = header.get("entityName"), header.get("changeType")
    record_ids = header.get("recordIds")
    if not isinstance(entity, str) or not isinstance(change_type, str):
        raise MalformedPayload(f"{path}: entityName and changeType are required")
    if not isinstance(record_ids, list) or not record_ids or not all(isinstance(r, str) for r in record_ids):
        raise MalformedPayload(f"{path}: recordIds must be a non-empty list of ids")
    commit = header.get("commitTimestamp")
    occurred = None
    if commit is not None:
        occurred = epoch_datetime(commit, field=f"{path}.ChangeEventHeader.commitTimestamp", millis=True)
    modified = None
    if payload.get("LastModifiedDate"):
        try:
            modified = parse_timestamp(payload["LastModifiedDate"])
        except MappingError as exc:
            raise MalformedPayload(str(exc)) from None
    events = []
    for record_id in record_ids:
        if modified is not None and "*" not in record_id:
            external_id = change_id(record_id, modified)
        else:
            external_id = f"{header.get('transactionKey')}:{header.get('sequenceNumber')}:{record_id}"
        events.append(ReceivedEvent(
            external_id=external_id,
            type=f"{entity}.{change_type}",
            subject=f"{_SUBJECTS.get(entity, 'customer')}:{record_id}",
            payload={"recordId": record_id, "header": dict(header),
                     "fields": {k: v for k, v in payload.items() if k != "ChangeEventHeader"},
                     "replayId": (envelope.get("data", {}).get("event") or {}).get("replayId")},
            occurred_at=occurred,
        ))
    return events


def parse(body: bytes) -> list[ReceivedEvent]:
    """One ReceivedEvent per record id of each change event (a change event may name
    several records changed in one transaction)."""
    decoded = json_loads(body)
    envelopes = decoded if isinstance(decoded, list) else [decoded]
    if not envelopes:
        raise MalformedPayload("empty batch")
    if len(envelopes) > MAX_BATCH:
        raise MalformedPayload(f"{len(envelopes)} change events in one request; the limit is {MAX_BATCH}")
    return [event for index, envelope in enumerate(envelopes) for event in _events_of(envelope, index)]


class SalesforceRelayReceiver:
    def __init__(self, *, tolerance: int = TOLERANCE):
        self.tolerance = tolerance

    def verify(self, *, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], method: str = "POST",
               url: str = "") -> None:
        verify_signature(body, headers, secrets, tolerance=self.tolerance)

    def parse(self, body: bytes) -> list[ReceivedEvent]:
        return parse(body)
