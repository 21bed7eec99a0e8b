"""A local stand-in for a Salesforce org: Accounts over REST, and change events
relayed to the hub as its webhook contract describes (``webhooks.py``).

Follows the documented shapes: query results with ``totalSize``/``done``/
``nextRecordsUrl``/``records[].attributes``, 18-character ids with the Account
prefix ``001``, errors as ``[{"message", "errorCode"}]``, PATCH answering 204, and
Change Data Capture envelopes whose UPDATE payload holds only the changed fields
plus ``LastModifiedDate``. Queries answer on ``/query`` and ``/query/`` (the form
simple-salesforce sends); ``GET /sobjects/Account/{external id field}/{value}``
finds a record by an external-id field (``external_id_fields``), 404 when none
and 300 with the records' URLs when several match. ``serve()`` runs it as a real
HTTP server, so a worker in another process reaches it like the real org;
``faults`` queues 429/5xx/REQUEST_LIMIT_EXCEEDED answers.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
import re
import string
import threading
import time
import uuid
from typing import Any

import httpx

from connectors.salesforce.client import DEFAULT_API_VERSION
from connectors.salesforce.mapping import ACCOUNT_FIELDS, ERP_ID_FIELD, parse_timestamp
from connectors.salesforce.opportunities import LINE_FIELDS, OPPORTUNITY_FIELDS
from connectors.salesforce.webhooks import sign
from connectors.sandbox_server import Fault, FaultQueue, Request, Response, Served

_ALPHABET = string.ascii_letters + string.digits
_QUERY = re.compile(r"^/services/data/(v[\d.]+)/query/?$")
_PAGE = re.compile(r"^/services/data/(v[\d.]+)/query/([\w-]+)$")
_RECORD = re.compile(r"^/services/data/(v[\d.]+)/sobjects/Account/(\w+)$")
_OPPORTUNITY = re.compile(r"^/services/data/(v[\d.]+)/sobjects/Opportunity/(\w+)$")
_LINES = re.compile(r"^\s*SELECT\s(.+?)\sFROM\s+OpportunityLineItem\s+WHERE\s+OpportunityId\s*=\s*'(\w+)'", re.I | re.S)
# Stages the sandbox's sales process has; Closed Won is the won stage (IsWon).
STAGES = {"Prospecting": (False, False), "Negotiation/Review": (False, False), "Closed Won": (True, True),
          "Closed Lost": (True, False)}
_BY_EXTERNAL_ID = re.compile(r"^/services/data/(v[\d.]+)/sobjects/Account/(\w+)/([^/]+)$")
_SINCE = re.compile(r"LastModifiedDate\s*>=?\s*(\S+)")


def _rest_time(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def _cdc_time(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _error(status: int, code: str, message: str) -> Response:
    return Response(status, [{"message": message, "errorCode": code}])


class SalesforceSandbox(Served):
    """An in-memory org. ``access_token`` is what the hub's connection must send;
    ``relay_secret`` signs relayed change events."""

    def __init__(self, *, access_token: str = "00Dsandbox!token", relay_secret: str = "relay-secret",
                 seed: int | None = None, page_size: int = 2000,
                 external_id_fields: tuple[str, ...] = (ERP_ID_FIELD,)):
        self.access_token = access_token
        self.external_id_fields = external_id_fields
        self.relay_secret = relay_secret
        self.page_size = page_size
        self.accounts: dict[str, dict[str, Any]] = {}
        self.change_events: list[dict[str, Any]] = []
        self.opportunities: dict[str, dict[str, Any]] = {}
        self.line_items: dict[str, dict[str, Any]] = {}
        self.write_backs: list[tuple[str, str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.faults = FaultQueue()
        self._rng = random.Random(seed)
        self._cursors: dict[str, list[dict[str, Any]]] = {}
        self._last_modified = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        self._replay = 0
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- records

    def new_id(self) -> str:
        return "001" + "".join(self._rng.choice(_ALPHABET) for _ in range(15))

    def _tick(self) -> dt.datetime:
        # Millisecond resolution like Salesforce, strictly increasing so every
        # change has its own LastModifiedDate.
        now = dt.datetime.now(dt.UTC).replace(microsecond=dt.datetime.now(dt.UTC).microsecond // 1000 * 1000)
        self._last_modified = max(now, self._last_modified + dt.timedelta(milliseconds=1))
        return self._last_modified

    def account_create(self, name: str, *, emit: bool = True, **fields: Any) -> dict[str, Any]:
        """Create an Account (fields by their API names) and its CREATE change event."""
        with self._lock:
            unknown = set(fields) - set(ACCOUNT_FIELDS)
            if unknown:
                raise ValueError(f"unknown Account fields {sorted(unknown)}")
            record_id = self.new_id()
            modified = self._tick()
            record = {name_: None for name_ in ACCOUNT_FIELDS}
            record.update(fields, Id=record_id, Name=name, LastModifiedDate=_rest_time(modified))
            self.accounts[record_id] = record
            event = self._change_event("CREATE", record_id, {k: v for k, v in record.items() if v is not None
                                                             and k != "Id"}, modified)
            if emit:
                self.change_events.append(event)
            return copy.deepcopy(record)

    def account_update(self, record_id: str, *, emit: bool = True, **fields: Any) -> dict[str, Any]:
        """Change fields of an Account; the UPDATE change event carries only those."""
        with self._lock:
            record = self.accounts[record_id]
            modified = self._tick()
            record.update(fields, LastModifiedDate=_rest_time(modified))
            event = self._change_event("UPDATE", record_id, dict(fields), modified)
            if emit:
                self.change_events.append(event)
            return copy.deepcopy(record)

    # ---------------------------------------------------------------- opportunities

    def opportunity_create(self, account_id: str, name: str, *, lines: list[dict[str, Any]] = (),
                           stage: str = "Prospecting", emit: bool = True, **fields: Any) -> dict[str, Any]:
        """An Opportunity with its line items (``{"ProductCode", "Quantity", "Hub_Price_Ref__c"}``)."""
        with self._lock:
            unknown = set(fields) - set(OPPORTUNITY_FIELDS)
            if unknown:
                raise ValueError(f"unknown Opportunity fields {sorted(unknown)}")
            record_id = "006" + "".join(self._rng.choice(_ALPHABET) for _ in range(15))
            modified = self._tick()
            closed, won = STAGES[stage]
            record = {name_: None for name_ in OPPORTUNITY_FIELDS}
            record.update({"CloseDate": dt.date.today().isoformat(), "CurrencyIsoCode": "EUR"}, **fields)
            record.update(Id=record_id, Name=name, AccountId=account_id, StageName=stage, IsClosed=closed, IsWon=won,
                          LastModifiedDate=_rest_time(modified))
            self.opportunities[record_id] = record
            for line in lines:
                line_id = "00k" + "".join(self._rng.choice(_ALPHABET) for _ in range(15))
                self.line_items[line_id] = {**{key: None for key in LINE_FIELDS}, "Name": line.get("ProductCode"),
                                            **line, "Id": line_id, "OpportunityId": record_id}
            event = self._change_event("CREATE", record_id, {k: v for k, v in record.items() if v is not None
                                                             and k != "Id"}, modified, entity="Opportunity")
            if emit:
                self.change_events.append(event)
            return copy.deepcopy(record)

    def opportunity_update(self, record_id: str, *, emit: bool = True, **fields: Any) -> dict[str, Any]:
        """Change fields (``StageName`` sets IsClosed / IsWon as the sales process says)."""
        with self._lock:
            record = self.opportunities[record_id]
            modified = self._tick()
            if "StageName" in fields:
                fields["IsClosed"], fields["IsWon"] = STAGES[fields["StageName"]]
            record.update(fields, LastModifiedDate=_rest_time(modified))
            event = self._change_event("UPDATE", record_id, dict(fields), modified, entity="Opportunity")
            if emit:
                self.change_events.append(event)
            return copy.deepcopy(record)

    def opportunity_close_won(self, record_id: str) -> dict[str, Any]:
        return self.opportunity_update(record_id, StageName="Closed Won")

    def _change_event(self, change_type: str, record_id: str, fields: dict[str, Any],
                      modified: dt.datetime, *, entity: str = "Account") -> dict[str, Any]:
        self._replay += 1
        payload = {key: value for key, value in fields.items() if key != "LastModifiedDate"}
        payload["LastModifiedDate"] = _cdc_time(modified)
        header = {
            "entityName": entity, "recordIds": [record_id], "changeType": change_type,
            "changeOrigin": "com/salesforce/api/rest/60.0", "transactionKey": str(uuid.uuid4()),
            "sequenceNumber": 1, "commitTimestamp": int(modified.timestamp() * 1000),
            "commitUser": "005xx000001X8UzAAK", "commitNumber": 10714186974 + self._replay,
        }
        if change_type == "UPDATE":
            header["changedFields"] = sorted(payload)
        return {"data": {"schema": "sandbox-schema", "payload": {"ChangeEventHeader": header, **payload},
                         "event": {"replayId": self._replay}}, "channel": f"/data/{entity}ChangeEvent"}

    def last_event(self, record_id: str) -> dict[str, Any]:
        return next(e for e in reversed(self.change_events)
                    if record_id in e["data"]["payload"]["ChangeEventHeader"]["recordIds"])

    # ---------------------------------------------------------------- relay

    def webhook_request(self, envelope: dict[str, Any] | list[dict[str, Any]], *,
                        timestamp: int | None = None, secret: str | None = None) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(envelope).encode()
        return body, {"Content-Type": "application/json", **sign(body, secret or self.relay_secret, timestamp)}

    def deliver(self, envelope: dict[str, Any], url: str, *, client: httpx.Client | None = None) -> httpx.Response:
        body, headers = self.webhook_request(envelope)
        if client is not None:
            return client.post(url, content=body, headers=headers)
        with httpx.Client(timeout=10) as own:
            return own.post(url, content=body, headers=headers)

    # ---------------------------------------------------------------- HTTP

    def connection_config(self) -> dict[str, Any]:
        return {"instance_url": self.url, "api_version": DEFAULT_API_VERSION}

    def credentials(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "webhook_secrets": [self.relay_secret]}

    def fail_next(self, status: int, *, code: str = "", message: str = "", retry_after: int | None = None,
                  times: int = 1, method: str | None = None) -> None:
        """Answer the next ``times`` requests with an error, e.g. ``fail_next(403,
        code="REQUEST_LIMIT_EXCEEDED")`` or ``fail_next(503, code="SERVER_UNAVAILABLE")``."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        body = [{"message": message or code or "error", "errorCode": code or "UNKNOWN_EXCEPTION"}]
        self.faults.add(Fault(status, body, headers, times=times, method=method))

    def handle(self, request: Request) -> Response:
        with self._lock:
            self.requests.append((request.method, request.path))
            if request.headers.get("authorization") != f"Bearer {self.access_token}":
                return _error(401, "INVALID_SESSION_ID", "Session expired or invalid")
            fault = self.faults.take(request)
            if fault is not None:
                return fault
            if request.method == "GET" and (match := _QUERY.match(request.path)):
                return self._query(request.query.get("q", ""), f"/services/data/{match.group(1)}")
            if request.method == "GET" and (match := _PAGE.match(request.path)):
                return self._page(match.group(2), f"/services/data/{match.group(1)}")
            if match := _RECORD.match(request.path):
                if request.method == "GET":
                    return self._get(match.group(2), request.query.get("fields"))
                if request.method == "PATCH":
                    return self._patch(match.group(2), request.json())
            if match := _OPPORTUNITY.match(request.path):
                if request.method == "GET":
                    return self._get_opportunity(match.group(2), request.query.get("fields"))
                if request.method == "PATCH":
                    return self._patch_opportunity(match.group(2), request.json())
            if request.method == "GET" and (match := _BY_EXTERNAL_ID.match(request.path)):
                return self._get_by_external_id(match.group(2), match.group(3), request.query.get("fields"))
            return _error(404, "NOT_FOUND", "The requested resource does not exist")

    def _render(self, record: dict[str, Any], fields: list[str] | None = None) -> dict[str, Any]:
        shown = {key: record.get(key) for key in (fields or ACCOUNT_FIELDS)}
        return {"attributes": {"type": "Account",
                               "url": f"/services/data/{DEFAULT_API_VERSION}/sobjects/Account/{record['Id']}"},
                **shown}

    def _query(self, soql: str, base: str) -> Response:
        if match := _LINES.match(soql):
            return self._query_lines(match, base)
        if not re.match(r"^\s*SELECT\s.+\sFROM\s+Account\b", soql, re.I | re.S):
            return _error(400, "MALFORMED_QUERY", f"unsupported query: {soql[:80]}")
        fields = [f.strip() for f in re.match(r"^\s*SELECT\s(.+?)\sFROM", soql, re.I | re.S).group(1).split(",")]
        unknown = [f for f in fields if f not in ACCOUNT_FIELDS]
        if unknown:
            return _error(400, "INVALID_FIELD", f"No such column '{unknown[0]}' on entity 'Account'")
        records = sorted(self.accounts.values(), key=lambda r: r["LastModifiedDate"])
        if match := _SINCE.search(soql):
            since = parse_timestamp(match.group(1))
            records = [r for r in records if parse_timestamp(r["LastModifiedDate"]) >= since]
        rendered = [self._render(r, fields) for r in records]
        cursor = "01g" + uuid.uuid4().hex[:15]
        self._cursors[cursor] = rendered
        return self._page(cursor, base, total=len(rendered))

    def _query_lines(self, match: re.Match, base: str) -> Response:
        fields = [f.strip() for f in match.group(1).split(",")]
        if unknown := [f for f in fields if f not in LINE_FIELDS]:
            return _error(400, "INVALID_FIELD", f"No such column '{unknown[0]}' on entity 'OpportunityLineItem'")
        found = sorted((line for line in self.line_items.values() if line["OpportunityId"] == match.group(2)),
                       key=lambda line: line["Id"])
        rendered = [{"attributes": {"type": "OpportunityLineItem",
                                    "url": f"/services/data/{DEFAULT_API_VERSION}/sobjects/OpportunityLineItem/{line['Id']}"},
                     **{key: line.get(key) for key in fields}} for line in found]
        cursor = "01g" + uuid.uuid4().hex[:15]
        self._cursors[cursor] = rendered
        return self._page(cursor, base, total=len(rendered))

    def _get_opportunity(self, record_id: str, fields: str | None) -> Response:
        record = self.opportunities.get(record_id)
        if record is None:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        wanted = [f for f in (fields or "").split(",") if f] or OPPORTUNITY_FIELDS
        if unknown := [f for f in wanted if f not in OPPORTUNITY_FIELDS]:
            return _error(400, "INVALID_FIELD", f"No such column '{unknown[0]}' on entity 'Opportunity'")
        return Response(200, {"attributes": {"type": "Opportunity",
                                             "url": f"/services/data/{DEFAULT_API_VERSION}/sobjects/Opportunity/{record_id}"},
                              **{key: record.get(key) for key in wanted}})

    def _patch_opportunity(self, record_id: str, values: Any) -> Response:
        if record_id not in self.opportunities:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        if not isinstance(values, dict):
            return _error(400, "JSON_PARSER_ERROR", "expected an object")
        readonly = {"Id", "LastModifiedDate", "IsClosed", "IsWon"}
        if unknown := [f for f in values if f not in OPPORTUNITY_FIELDS or f in readonly]:
            return _error(400, "INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type Opportunity")
        for key, value in values.items():
            self.write_backs.append((record_id, key, value))
        self.opportunity_update(record_id, **values)
        return Response(204)

    def _page(self, cursor: str, base: str, total: int | None = None) -> Response:
        remaining = self._cursors.pop(cursor.split("-")[0], None)
        if remaining is None:
            return _error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        page, rest = remaining[: self.page_size], remaining[self.page_size:]
        body: dict[str, Any] = {"totalSize": total if total is not None else len(remaining), "done": not rest,
                                "records": page}
        if rest:
            self._cursors[cursor.split("-")[0]] = rest
            body["nextRecordsUrl"] = f"{base}/query/{cursor.split('-')[0]}-{len(page)}"
        return Response(200, body)

    def _get(self, record_id: str, fields: str | None) -> Response:
        record = self.accounts.get(record_id)
        if record is None:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        wanted = [f for f in (fields or "").split(",") if f] or None
        if wanted and (unknown := [f for f in wanted if f not in ACCOUNT_FIELDS]):
            return _error(400, "INVALID_FIELD", f"No such column '{unknown[0]}' on entity 'Account'")
        return Response(200, self._render(record, wanted))

    def _get_by_external_id(self, field: str, value: str, fields: str | None) -> Response:
        if field not in self.external_id_fields:
            return _error(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {field}")
        found = [r for r in self.accounts.values() if r.get(field) == value]
        if len(found) > 1:
            return Response(300, [self._render(r, ["Id"])["attributes"]["url"] for r in found])
        if not found:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        return self._get(found[0]["Id"], fields)

    def _patch(self, record_id: str, values: Any) -> Response:
        if record_id not in self.accounts:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        if not isinstance(values, dict):
            return _error(400, "JSON_PARSER_ERROR", "expected an object")
        if unknown := [f for f in values if f not in ACCOUNT_FIELDS or f in ("Id", "LastModifiedDate")]:
            return _error(400, "INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type Account")
        for key, value in values.items():
            self.write_backs.append((record_id, key, value))
        self.account_update(record_id, **values)
        return Response(204)


def wait_for_write_back(sandbox: SalesforceSandbox, record_id: str, *, timeout: float = 60) -> Any:
    """The ERP id written back to ``record_id``, waiting up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = sandbox.accounts[record_id].get(ERP_ID_FIELD)
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"no ERP id written back to {record_id}")
