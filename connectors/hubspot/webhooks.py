"""HubSpot webhook authentication (signature v3) and batch parsing.

v3: ``X-HubSpot-Signature-v3`` = base64(HMAC-SHA256(app client secret,
method + uri + body + timestamp)), with ``X-HubSpot-Request-Timestamp`` in epoch
milliseconds; requests older than 5 minutes are refused (as HubSpot's SDK does,
which checks only age). ``uri`` is the full URL the request was sent to; HubSpot
signs it with these percent-escapes decoded: ``%3A %2F %3F %40 %21 %24 %27 %28
%29 %2A %2C %3B``, so the hub decodes exactly those before comparing.

Behind a proxy the hub must see the public URL (``USE_X_FORWARDED_HOST`` and
``SECURE_PROXY_SSL_HEADER``), or every v3 signature fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

from connectors.base import ReceivedEvent
from connectors.errors import InvalidSignature, MalformedPayload
from connectors.payloads import epoch_datetime, header_epoch, json_loads

SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
MAX_AGE_SECONDS = 300
# HubSpot documents only the age limit; the hub refuses the same skew into the future.
MAX_FUTURE_SECONDS = 300
# HubSpot sends at most 100 events per request.
MAX_BATCH = 100
_DECODED = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'", "%28": "(",
            "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}


def normalize_uri(uri: str) -> str:
    for escaped, char in _DECODED.items():
        uri = uri.replace(escaped, char).replace(escaped.lower(), char)
    return uri


def compute_signature(*, secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    source = method.upper().encode() + normalize_uri(uri).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def verify_signature(*, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], method: str, url: str,
                     now: float | None = None) -> None:
    signature, timestamp = _header(headers, SIGNATURE_HEADER), _header(headers, TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise InvalidSignature(f"Missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
    sent_at = header_epoch(timestamp, header=TIMESTAMP_HEADER) / 1000
    if isinstance(secrets, str):
        secrets = [secrets]
    matched = False
    for secret in filter(None, secrets):
        expected = compute_signature(secret=secret, method=method, uri=url, body=body, timestamp=timestamp)
        if hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            matched = True
    if not matched:
        raise InvalidSignature("Signature does not match (secret, method, URL, body or timestamp differ)")
    current = time.time() if now is None else now
    if current - sent_at > MAX_AGE_SECONDS:
        raise InvalidSignature(f"Timestamp is older than {MAX_AGE_SECONDS} s ({timestamp})")
    if sent_at - current > MAX_FUTURE_SECONDS:
        raise InvalidSignature(f"Timestamp is more than {MAX_FUTURE_SECONDS} s in the future ({timestamp})")


def parse(body: bytes) -> list[ReceivedEvent]:
    """A JSON array of events; each becomes one inbox row. ``eventId`` alone is not
    guaranteed unique, so the inbox id combines it with the subscription, object and time."""
    events = json_loads(body)
    if not isinstance(events, list) or not events:
        raise MalformedPayload("expected a non-empty JSON array of events")
    if len(events) > MAX_BATCH:
        raise MalformedPayload(f"{len(events)} events in one request; HubSpot sends at most {MAX_BATCH}")
    received = []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise MalformedPayload(f"[{index}]: not an object")
        missing = [k for k in ("eventId", "subscriptionType", "objectId", "occurredAt") if event.get(k) is None]
        if missing:
            raise MalformedPayload(f"[{index}]: missing {', '.join(missing)}")
        if not isinstance(event["subscriptionType"], str):
            raise MalformedPayload(f"[{index}]: subscriptionType must be a string")
        if not isinstance(event["objectId"], int | str) or isinstance(event["objectId"], bool):
            raise MalformedPayload(f"[{index}].objectId: expected an id")
        occurred_at = epoch_datetime(event["occurredAt"], field=f"[{index}].occurredAt", millis=True)
        received.append(ReceivedEvent(
            external_id=f"{event['eventId']}:{event['subscriptionType']}:{event['objectId']}:{event['occurredAt']}",
            type=event["subscriptionType"],
            subject=f"{'order' if event['subscriptionType'].startswith('deal.') else 'customer'}:{event['objectId']}",
            payload=event,
            occurred_at=occurred_at,
        ))
    return received


class HubSpotWebhookReceiver:
    def verify(self, *, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], method: str,
               url: str) -> None:
        verify_signature(body=body, headers=headers, secrets=secrets, method=method, url=url)

    def parse(self, body: bytes) -> list[ReceivedEvent]:
        return parse(body)
