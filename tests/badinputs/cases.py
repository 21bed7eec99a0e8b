"""The bad-input cases: what a careless sender or an attacker sends, and what the hub
must answer. One ``Case`` per row of the table ``make bad-inputs`` prints.

To add a case: write a function ``(ctx) -> Request`` and append a ``Case`` to
``CASES`` with the status the hub must answer; mark ``forged=True`` if it must never
be stored and ``valid=True`` if it must be stored (and processed, when the source is
processed in this suite).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connectors.hubspot.webhooks import compute_signature as hubspot_signature
from connectors.salesforce.webhooks import sign as relay_sign
from connectors.stripe.webhooks import compute_signature as stripe_signature

SECRET = "whsec_badinputs_0123456789"
HUBSPOT_URL = "http://testserver/api/webhooks/hubspot/"


@dataclass
class Request:
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)  # WSGI META keys
    content_type: str = "application/json"
    token: str | None = None  # "valid", "expired", "bogus" or None for no token


@dataclass
class Case:
    name: str
    target: str  # stripe, hubspot, salesforce, rest
    expected: int | tuple[int, ...]
    build: Callable[[Any], Request]
    forged: bool = False  # must never be stored
    valid: bool = False  # must be stored
    process: bool = False  # run the worker on what was stored (Stripe: the memory ERP)

    def allows(self, status: int) -> bool:
        return status in (self.expected if isinstance(self.expected, tuple) else (self.expected,))


# ---------------------------------------------------------------- Stripe


def stripe_event(ctx, **invoice_changes: Any) -> dict[str, Any]:
    sandbox = ctx.sandbox
    customer = sandbox.customer(invoice_changes.pop("customer_name", "Ada Lovelace"), "ada@example.com")
    invoice = sandbox.finalize(sandbox.invoice(customer, [("Plan", 1, 5000)], currency=invoice_changes.pop(
        "currency", "usd")))
    invoice.update(invoice_changes)
    return sandbox.event("invoice.finalized", invoice)


def stripe_request(body: bytes | dict, *, t: int | None = None, secret: str = SECRET, header: str | None = None,
                   content_type: str = "application/json", **meta: str) -> Request:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    t = int(time.time()) if t is None else t
    signature = header if header is not None else f"t={t},v1={stripe_signature(raw, secret, t)}"
    headers = {"HTTP_STRIPE_SIGNATURE": signature, **meta} if signature else dict(meta)
    return Request("POST", "/api/webhooks/stripe/", raw, headers, content_type)


def _nested(depth: int) -> bytes:
    return b'{"id": "evt_deep", "object": "event", "x": ' + b"[" * depth + b"]" * depth + b"}"


def _stripe_name(ctx, name: str) -> Request:
    event = stripe_event(ctx)
    event["data"]["object"]["customer_name"] = name
    return stripe_request(event)


def _stripe_total(ctx, value: Any) -> Request:
    event = stripe_event(ctx)
    event["data"]["object"]["total"] = value
    raw = json.dumps(event).encode().replace(b'"__RAW__"', b"1e309") if value == "__RAW__" else None
    return stripe_request(raw or event)


STRIPE = [
    Case("stripe: a valid signed invoice event", "stripe", 200, lambda c: stripe_request(stripe_event(c)),
         valid=True, process=True),
    Case("stripe: the same event id replayed", "stripe", 200, lambda c: c.replay_of(stripe_request(stripe_event(c)))),
    Case("stripe: missing signature", "stripe", 400, lambda c: stripe_request(stripe_event(c), header=""), forged=True),
    Case("stripe: signed with another secret", "stripe", 400,
         lambda c: stripe_request(stripe_event(c), secret="whsec_attacker"), forged=True),
    Case("stripe: unparseable signature header", "stripe", 400,
         lambda c: stripe_request(stripe_event(c), header="garbage"), forged=True),
    Case("stripe: signature of another body", "stripe", 400,
         lambda c: c.swap_body(stripe_request(stripe_event(c)), b'{"id": "evt_x"}'), forged=True),
    Case("stripe: stale timestamp (301 s old)", "stripe", 400,
         lambda c: stripe_request(stripe_event(c), t=int(time.time()) - 301), forged=True),
    Case("stripe: future timestamp (+1 h)", "stripe", 400,
         lambda c: stripe_request(stripe_event(c), t=int(time.time()) + 3600), forged=True),
    Case("stripe: 400-digit timestamp", "stripe", 400,
         lambda c: stripe_request(stripe_event(c), header=f"t={'9' * 400},v1={'0' * 64}"), forged=True),
    Case("stripe: malformed JSON, signed", "stripe", 400, lambda c: stripe_request(b'{"id": "evt_1", "object": '),
         forged=True),
    Case("stripe: empty body, signed", "stripe", (400, 415), lambda c: stripe_request(b""), forged=True),
    Case("stripe: a JSON array, signed", "stripe", 400, lambda c: stripe_request(b"[1, 2]"), forged=True),
    Case("stripe: invalid UTF-8, signed", "stripe", 400, lambda c: stripe_request(b'{"id": "\xff\xfe"}'),
         forged=True),
    Case("stripe: nested 10,000 levels, signed", "stripe", 400, lambda c: stripe_request(_nested(10_000)),
         forged=True),
    Case("stripe: nested 100 levels, signed", "stripe", 400, lambda c: stripe_request(_nested(100)), forged=True),
    Case("stripe: NUL byte in a value, signed", "stripe", 400,
         lambda c: _stripe_name(c, "Ada\u0000Lovelace"), forged=True),
    Case("stripe: NUL byte in a key, signed", "stripe", 400,
         lambda c: stripe_request({**stripe_event(c), "x\u0000": 1}), forged=True),
    Case("stripe: event type of 200 characters", "stripe", 400,
         lambda c: stripe_request({**stripe_event(c), "type": "invoice." + "x" * 192}), forged=True),
    Case("stripe: object id of 300 characters", "stripe", 400,
         lambda c: c.with_object_id(stripe_event(c), "in_" + "9" * 297), forged=True),
    Case("stripe: event id of 300 characters", "stripe", 400,
         lambda c: stripe_request({**stripe_event(c), "id": "evt_" + "1" * 296}), forged=True),
    Case("stripe: created = 10^20", "stripe", 400, lambda c: stripe_request({**stripe_event(c), "created": 10**20}),
         forged=True),
    Case("stripe: created is a string", "stripe", 400,
         lambda c: stripe_request({**stripe_event(c), "created": "yesterday"}), forged=True),
    Case("stripe: thin (v2) event", "stripe", 400,
         lambda c: stripe_request({"id": "evt_1", "object": "v2.core.event", "type": "x"}), forged=True),
    Case("stripe: wrong content type (text/plain)", "stripe", 415,
         lambda c: stripe_request(stripe_event(c), content_type="text/plain"), forged=True),
    Case("stripe: form-encoded body", "stripe", 415,
         lambda c: stripe_request(b"id=evt_1", content_type="application/x-www-form-urlencoded"), forged=True),
    Case("stripe: 2 MiB body, declared", "stripe", 413, lambda c: stripe_request(b"[" + b"0," * 1_048_576 + b"0]"),
         forged=True),
    Case("stripe: 2 MiB body, Content-Length understated", "stripe", 400,
         lambda c: stripe_request(b" " * 2_097_152 + json.dumps(stripe_event(c)).encode(), CONTENT_LENGTH="100"),
         forged=True),
    Case("stripe: 2 MiB body, no Content-Length", "stripe", (400, 413),
         lambda c: stripe_request(b" " * 2_097_152, CONTENT_LENGTH=""), forged=True),
    Case("stripe: a huge array inside a signed event", "stripe", 200,
         lambda c: stripe_request({**stripe_event(c), "noise": list(range(100_000))}), valid=True, process=True),
    Case("stripe: unicode and RTL text in the name", "stripe", 200,
         lambda c: _stripe_name(c, "שלום \u202eevil\u202c 世界 👩‍💻"), valid=True, process=True),
    Case("stripe: SQL in the name", "stripe", 200, lambda c: _stripe_name(c, "Robert'); DROP TABLE customer;--"),
         valid=True, process=True),
    Case("stripe: template strings in the name", "stripe", 200,
         lambda c: _stripe_name(c, "{{ 7*7 }} ${jndi:ldap://x/a} {% debug %}"), valid=True, process=True),
    Case("stripe: a 400-character name (mapping fault)", "stripe", 200, lambda c: _stripe_name(c, "N" * 400),
         valid=True, process=True),
    Case("stripe: float amount", "stripe", 200, lambda c: _stripe_total(c, 50.5), valid=True, process=True),
    Case("stripe: 1e309 amount", "stripe", 400, lambda c: _stripe_total(c, "__RAW__"), forged=True),
    Case("stripe: amount above 2^63", "stripe", 200, lambda c: _stripe_total(c, 2**64), valid=True, process=True),
    Case("stripe: unknown currency", "stripe", 200,
         lambda c: stripe_request(stripe_event(c, currency="xyz")), valid=True, process=True),
    Case("stripe: bad date (due_date a string)", "stripe", 200,
         lambda c: stripe_request(stripe_event(c, due_date="tomorrow")), valid=True, process=True),
    Case("stripe: GET instead of POST", "stripe", 405,
         lambda c: Request("GET", "/api/webhooks/stripe/", b"", {}, "application/json")),
    Case("unknown webhook source", "stripe", 404,
         lambda c: Request("POST", "/api/webhooks/paypal/", b"{}", {}, "application/json"), forged=True),
]


# ---------------------------------------------------------------- HubSpot


def hubspot_events(count: int = 1, **changes: Any) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    return [{"eventId": 100 + i, "subscriptionId": 7, "portalId": 62515, "appId": 1, "occurredAt": now,
             "subscriptionType": "company.propertyChange", "attemptNumber": 0, "objectId": 5000 + i,
             "propertyName": "name", "propertyValue": "Acme", "changeSource": "CRM", **changes}
            for i in range(count)]


def hubspot_request(body: bytes | list, *, timestamp: str | None = None, secret: str = SECRET,
                    signature: str | None = None) -> Request:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    timestamp = str(int(time.time() * 1000)) if timestamp is None else timestamp
    if signature is None:
        signature = hubspot_signature(secret=secret, method="POST", uri=HUBSPOT_URL, body=raw, timestamp=timestamp)
    return Request("POST", "/api/webhooks/hubspot/", raw,
                   {"HTTP_X_HUBSPOT_SIGNATURE_V3": signature, "HTTP_X_HUBSPOT_REQUEST_TIMESTAMP": timestamp})


HUBSPOT = [
    Case("hubspot: a valid signed batch of 3", "hubspot", 200, lambda c: hubspot_request(hubspot_events(3)),
         valid=True),
    Case("hubspot: wrong signature", "hubspot", 400, lambda c: hubspot_request(hubspot_events(), secret="other"),
         forged=True),
    Case("hubspot: 400-digit timestamp header", "hubspot", 400,
         lambda c: hubspot_request(hubspot_events(), timestamp="9" * 400), forged=True),
    Case("hubspot: stale timestamp (10 min)", "hubspot", 400,
         lambda c: hubspot_request(hubspot_events(), timestamp=str(int(time.time() * 1000) - 600_000)), forged=True),
    Case("hubspot: future timestamp (+1 h)", "hubspot", 400,
         lambda c: hubspot_request(hubspot_events(), timestamp=str(int(time.time() * 1000) + 3_600_000)),
         forged=True),
    Case("hubspot: occurredAt = 10^20", "hubspot", 400,
         lambda c: hubspot_request(hubspot_events(occurredAt=10**20)), forged=True),
    Case("hubspot: 101 events in one request", "hubspot", 400, lambda c: hubspot_request(hubspot_events(101)),
         forged=True),
    Case("hubspot: an object instead of an array", "hubspot", 400,
         lambda c: hubspot_request(hubspot_events()[0]), forged=True),
    Case("hubspot: NUL byte in a property value", "hubspot", 400,
         lambda c: hubspot_request(hubspot_events(propertyValue="a\u0000b")), forged=True),
    Case("hubspot: subscriptionType of 200 characters", "hubspot", 400,
         lambda c: hubspot_request(hubspot_events(subscriptionType="company." + "x" * 192)), forged=True),
]


# ---------------------------------------------------------------- Salesforce (relay)


def change_event(**header_changes: Any) -> dict[str, Any]:
    header = {"entityName": "Account", "recordIds": ["001xx000003DGb2AAG"], "changeType": "UPDATE",
              "transactionKey": "tk-1", "sequenceNumber": 1, "commitTimestamp": int(time.time() * 1000),
              "changedFields": ["Name"], **header_changes}
    return {"data": {"schema": "s", "payload": {"ChangeEventHeader": header, "Name": "Acme",
                                                 "LastModifiedDate": "2026-01-05T10:00:00.000Z"},
                     "event": {"replayId": 1}}, "channel": "/data/AccountChangeEvent"}


def relay_request(body: bytes | dict | list, *, timestamp: int | None = None, secret: str = SECRET,
                  headers: dict[str, str] | None = None) -> Request:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    signed = headers if headers is not None else relay_sign(raw, secret, timestamp)
    return Request("POST", "/api/webhooks/salesforce/", raw,
                   {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in signed.items()})


SALESFORCE = [
    Case("salesforce: a valid signed change event", "salesforce", 200, lambda c: relay_request(change_event()),
         valid=True),
    Case("salesforce: missing signature", "salesforce", 400, lambda c: relay_request(change_event(), headers={}),
         forged=True),
    Case("salesforce: future timestamp (+1 h)", "salesforce", 400,
         lambda c: relay_request(change_event(), timestamp=int(time.time()) + 3600), forged=True),
    Case("salesforce: commitTimestamp out of range", "salesforce", 400,
         lambda c: relay_request(change_event(commitTimestamp=10**25)), forged=True),
    Case("salesforce: recordIds not a list", "salesforce", 400,
         lambda c: relay_request(change_event(recordIds="001")), forged=True),
    Case("salesforce: NUL byte in a field", "salesforce", 400,
         lambda c: relay_request(change_event(changeOrigin="x\u0000")), forged=True),
    Case("salesforce: 600 record ids in one event", "salesforce", 400,
         lambda c: relay_request(change_event(recordIds=[f"001{i:015d}" for i in range(600)])), forged=True),
]


# ---------------------------------------------------------------- REST API


def rest(method: str, path: str, body: Any = None, *, token: str | None = "valid", raw: bytes | None = None,
         content_type: str = "application/json") -> Callable[[Any], Request]:
    def build(ctx) -> Request:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        return Request(method, path.format(**ctx.ids), data, {}, content_type, token)

    return build


REST = [
    Case("rest: no token", "rest", 401, rest("GET", "/api/deliveries/", token=None)),
    Case("rest: a bogus token", "rest", 401, rest("GET", "/api/deliveries/", token="bogus")),
    Case("rest: an expired token", "rest", 401, rest("GET", "/api/deliveries/", token="expired")),
    Case("rest: a page of 10^12 items", "rest", 200, rest("GET", "/api/deliveries/?limit=1000000000000")),
    Case("rest: negative offset", "rest", 200, rest("GET", "/api/deliveries/?offset=-5")),
    Case("rest: a transaction id that is not a UUID", "rest", 404, rest("GET", "/api/transactions/not-a-uuid/")),
    Case("rest: a sync run id above 2^63", "rest", 404, rest("GET", "/api/syncs/99999999999999999999999/")),
    Case("rest: a customer id above 2^63", "rest", 404, rest("GET", "/api/customers/99999999999999999999999/")),
    Case("rest: replay without a reason", "rest", 400, rest("POST", "/api/exceptions/{exception}/replay/", {})),
    Case("rest: replay of a missing exception", "rest", 404,
         rest("POST", "/api/exceptions/999999/replay/", {"reason": "x"})),
    Case("rest: bulk replay with ids that are not numbers", "rest", 400,
         rest("POST", "/api/exceptions/replay/", {"reason": "x", "ids": ["abc"]})),
    Case("rest: bulk replay with no filter", "rest", 400, rest("POST", "/api/exceptions/replay/", {"reason": "x"})),
    Case("rest: malformed JSON body", "rest", 400,
         rest("POST", "/api/exceptions/{exception}/replay/", raw=b'{"reason": ')),
    Case("rest: a body nested 10,000 levels", "rest", 400,
         rest("POST", "/api/exceptions/{exception}/replay/", raw=b"[" * 10_000 + b"]" * 10_000)),
    Case("rest: edit-and-replay with a list as payload", "rest", 400,
         rest("POST", "/api/exceptions/{exception}/edit-and-replay/", {"reason": "x", "payload": [1, 2]})),
    Case("rest: edit-and-replay with a bad due date", "rest", 400,
         rest("POST", "/api/exceptions/{delivery_exception}/edit-and-replay/",
              {"reason": "x", "invoice": {"due_on": "tomorrow"}})),
    Case("rest: edit-and-replay with non-numeric tax", "rest", 400,
         rest("POST", "/api/exceptions/{delivery_exception}/edit-and-replay/",
              {"reason": "x", "invoice": {"lines": [{"position": 1, "tax_amount": "ten"}]}})),
    Case("rest: edit-and-replay with lines as an object", "rest", 400,
         rest("POST", "/api/exceptions/{delivery_exception}/edit-and-replay/",
              {"reason": "x", "invoice": {"lines": {"position": 1}}})),
    Case("rest: a reason of 10,000 characters", "rest", 400,
         rest("POST", "/api/exceptions/{exception}/replay/", {"reason": "r" * 10_000})),
    Case("rest: a form-encoded body", "rest", 415,
         rest("POST", "/api/exceptions/{exception}/replay/", raw=b"reason=x",
              content_type="application/x-www-form-urlencoded; charset=x-unknown")),
    Case("rest: DELETE on a read-only list", "rest", 405, rest("DELETE", "/api/deliveries/")),
    Case("rest: a rates load with a malformed date", "rest", 400,
         rest("POST", "/api/rates/load/", {"date": "31/12/2026"})),
    Case("rest: a rates load with no rate source configured", "rest", 409, rest("POST", "/api/rates/load/", {})),
    Case("rest: a rates load by another team", "rest", 403, rest("POST", "/api/rates/load/", {}, token="sales")),
    # Cross-team access: a sales operations user and finance's exceptions (BOLA).
    Case("rest: another team reads an exception", "rest", 404,
         rest("GET", "/api/exceptions/{delivery_exception}/", token="sales")),
    Case("rest: another team replays an exception", "rest", 404,
         rest("POST", "/api/exceptions/{delivery_exception}/replay/", {"reason": "x"}, token="sales")),
    Case("rest: another team edits and replays an exception", "rest", 404,
         rest("POST", "/api/exceptions/{exception}/edit-and-replay/", {"reason": "x", "payload": {}}, token="sales")),
    Case("rest: another team bulk-replays by id (nothing of theirs to replay)", "rest", 202,
         lambda c: Request("POST", "/api/exceptions/replay/", json.dumps(
             {"reason": "x", "ids": [c.ids["delivery_exception"]]}).encode(), {}, "application/json", "sales")),
]

CASES: list[Case] = [*STRIPE, *HUBSPOT, *SALESFORCE, *REST]


def mutated(event: dict[str, Any], **changes: Any) -> dict[str, Any]:
    result = copy.deepcopy(event)
    result.update(changes)
    return result
