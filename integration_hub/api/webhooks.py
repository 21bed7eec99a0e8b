"""Webhook ingress: verify, store in the inbox, answer. Nothing is processed here.

The answer is 2xx only after the inbox row is committed; every rejection is a 4xx
with a reason (or 503 when the hub cannot store the event right now, so the vendor
retries), never a 500. Payloads the database could not hold (NUL characters, deep
nesting, over-long ids) are refused with a 400 before storage (``connectors.payloads``),
so they never turn into a 503 the vendor retries for days; anything else unexpected
becomes a logged incident and a 400 (``integration_hub.api.guard``).
"""

from __future__ import annotations

import structlog
from django.conf import settings
from django.db import DatabaseError, DataError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from connectors import registry
from connectors.base import WebhookReceiver
from connectors.errors import InvalidSignature, MalformedPayload
from connectors.payloads import check_events
from connectors.services import WebhookSender, webhook_senders
from integration_hub.runtime.services import inbound_accept

log = structlog.get_logger(__name__)


def _error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status)


def _read_body(request: HttpRequest, limit: int) -> bytes | None:
    """The raw body, or None if it is larger than ``limit`` (read no further)."""
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


def _verified_sender(
    receiver: WebhookReceiver, senders: list[WebhookSender], *, body: bytes, request: HttpRequest
) -> WebhookSender:
    """The connection whose secret signed the request; InvalidSignature if none did."""
    failure = InvalidSignature("no connection's secret matches the signature")
    for sender in senders:
        try:
            receiver.verify(
                body=body, headers=request.headers, secrets=sender.secrets,
                method=request.method, url=request.build_absolute_uri(),
            )
            return sender
        except InvalidSignature as exc:
            failure = exc
    raise failure


@csrf_exempt
@require_POST
def webhook_receive(request: HttpRequest, source: str) -> JsonResponse:
    """``source`` is a connection's name, or a vendor's when each of its connections
    signs with its own secret (the signature tells which connection sent it)."""
    try:
        senders = [sender for sender in webhook_senders(source) if sender.secrets]
    except DatabaseError:
        log.exception("webhook_database_unavailable", source=source)
        return _error(503, "unavailable", "the hub cannot store events right now; retry later")
    vendor = senders[0].vendor if senders else source
    try:
        receiver = registry.webhook_receiver(vendor)
    except registry.UnknownVendor:
        return _error(404, "unknown_source", f"no webhook source named {source!r}")

    # Every supported sender posts JSON; anything else is refused before reading.
    content_type = (request.content_type or "").lower()
    if content_type != "application/json":
        return _error(415, "unsupported_media_type", f"expected application/json, got {content_type or 'none'!r}")

    limit = settings.HUB_WEBHOOK_MAX_BYTES
    body = _read_body(request, limit)
    if body is None:
        return _error(413, "payload_too_large", f"webhook bodies are limited to {limit} bytes")
    if not senders:
        return _error(503, "not_configured", f"no active {source} connection with a webhook secret")

    try:
        sender = _verified_sender(receiver, senders, body=body, request=request)
        events = receiver.parse(body)
        check_events(sender.name, events)
    except InvalidSignature as exc:
        log.warning("webhook_rejected", source=source, reason=str(exc))
        return _error(400, "invalid_signature", str(exc))
    except MalformedPayload as exc:
        log.warning("webhook_malformed", source=source, reason=str(exc)[:300])
        return _error(400, "malformed_payload", str(exc))

    accepted = []
    try:
        for event in events:
            row, created = inbound_accept(source=sender.name, event=event)
            accepted.append(
                {"event_id": event.external_id, "status": "accepted" if created else "duplicate",
                 "transaction_id": str(row.transaction_id)}
            )
    except DataError:
        # The database refused the values themselves: retrying cannot help.
        log.exception("webhook_unstorable", source=source)
        return _error(400, "unstorable_payload", "the database refused a value of this event")
    except DatabaseError:
        log.exception("webhook_database_unavailable", source=source)
        return _error(503, "unavailable", "the hub cannot store events right now; retry later")
    if len(accepted) == 1:
        return JsonResponse(accepted[0])
    return JsonResponse({"events": accepted})
