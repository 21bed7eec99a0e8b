"""Stripe Billing meters in the API sandbox, as Stripe documents them.

- ``POST /v1/billing/meters`` (``display_name``, ``event_name``, ``default_aggregation[formula]``
  sum|count|last, ``customer_mapping[event_payload_key]``, ``value_settings[event_payload_key]``),
  ``GET /v1/billing/meters`` (``limit``, ``starting_after``, ``status``), ``GET /v1/billing/meters/{id}``.
- ``POST /v1/billing/meter_events`` (form-encoded ``event_name``, ``payload[...]``, ``identifier``,
  ``timestamp``): synchronous validation — an active meter for the name, a known customer, a
  numeric value, a timestamp at most 35 days old and 5 minutes ahead. ``identifier`` is unique
  (Stripe: over a rolling 24 h window; the sandbox keeps every one).
- ``POST /v2/billing/meter_event_session`` → ``authentication_token`` valid 15 minutes; then
  ``POST /v2/billing/meter_event_stream`` (the ``meter_events`` host in Stripe, the same server
  here) with ``Authorization: Bearer <token>`` and JSON ``{"events": [...]}`` (≤ 100) → ``{}``;
  an expired token is 401 ``billing_meter_event_session_expired``. Stream events are validated
  asynchronously by Stripe: an invalid one is dropped (and reported in ``stream_errors``, the
  stand-in for ``v1.billing.meter.error_report_triggered``); a repeated identifier is dropped.
- ``GET /v1/billing/meters/{id}/event_summaries`` (``customer``, ``start_time``, ``end_time``
  minute-aligned, optional ``value_grouping_window`` hour|day) → ``billing.meter_event_summary``
  objects with ``aggregated_value``.

Test knobs: ``meter_event_remove(identifier)`` (an event Stripe never kept),
``sessions_expire()``, and ``clock`` (seconds since the epoch, default the real time).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.sandbox_server import Request, Response

_METER = re.compile(r"^/v1/billing/meters/(mtr_\w+)$")
_SUMMARIES = re.compile(r"^/v1/billing/meters/(mtr_\w+)/event_summaries$")
MAX_AGE_SECONDS = 35 * 86400
MAX_AHEAD_SECONDS = 300
SESSION_SECONDS = 15 * 60
STREAM_MAX_EVENTS = 100
_SUMMARY_PARAMS = {"customer", "start_time", "end_time", "value_grouping_window", "limit", "starting_after"}


def _error(status: int, kind: str, message: str, code: str | None = None, param: str | None = None) -> Response:
    error: dict[str, Any] = {"type": kind, "code": code, "message": message}
    if param is not None:
        error["param"] = param
    return Response(status, {"error": error})


def _invalid(message: str, param: str | None = None, code: str | None = "parameter_invalid") -> Response:
    return _error(400, "invalid_request_error", message, code, param)


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


class MeterStore:
    def __init__(self, customers: dict[str, dict[str, Any]], *, clock: Callable[[], float] = time.time):
        self.customers = customers
        self.clock = clock
        self.meters: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}  # identifier → event, in arrival order
        self.sessions: dict[str, float] = {}  # token → expires at
        self.stream_errors: list[dict[str, Any]] = []
        self._seq = 0

    # ------------------------------------------------------------ knobs

    def meter_event_remove(self, identifier: str) -> None:
        del self.events[identifier]

    def sessions_expire(self) -> None:
        self.sessions = dict.fromkeys(self.sessions, 0.0)

    def events_for(self, event_name: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events.values() if event_name in (None, e["event_name"])]

    # ------------------------------------------------------------ routing

    def handles(self, path: str) -> bool:
        return path.startswith(("/v1/billing/", "/v2/billing/"))

    def session_token_valid(self, token: str) -> bool | None:
        """True, False (expired), or None (never issued)."""
        if token not in self.sessions:
            return None
        return self.sessions[token] > self.clock()

    def route(self, request: Request, params: dict[str, Any]) -> Response:
        path, method = request.path, request.method
        if path == "/v1/billing/meters" and method == "POST":
            return self._meter_create(params)
        if path == "/v1/billing/meters" and method == "GET":
            return self._meter_list(request.query)
        if (match := _METER.match(path)) and method == "GET":
            meter = self.meters.get(match.group(1))
            if meter is None:
                return _error(404, "invalid_request_error", f"No such billing meter: '{match.group(1)}'",
                              "resource_missing")
            return Response(200, meter)
        if (match := _SUMMARIES.match(path)) and method == "GET":
            return self._summaries(match.group(1), request.query)
        if path == "/v1/billing/meter_events" and method == "POST":
            return self._event_create(params)
        if path == "/v2/billing/meter_event_session" and method == "POST":
            return self._session_create()
        if path == "/v2/billing/meter_event_stream" and method == "POST":
            return self._stream(params)
        return _error(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path})")

    # ------------------------------------------------------------ meters

    def _next_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}_{self._seq:06d}{secrets.token_hex(6)}"

    def _active_meter(self, event_name: str) -> dict[str, Any] | None:
        return next((m for m in self.meters.values()
                     if m["event_name"] == event_name and m["status"] == "active"), None)

    def _meter_create(self, params: dict[str, Any]) -> Response:
        for required in ("display_name", "event_name"):
            if not params.get(required):
                return _invalid(f"Missing required param: {required}.", required, "parameter_missing")
        formula = (params.get("default_aggregation") or {}).get("formula")
        if formula not in ("sum", "count", "last"):
            return _invalid("Invalid default_aggregation[formula]: must be one of sum, count, or last",
                            "default_aggregation[formula]")
        if any(m["event_name"] == params["event_name"] for m in self.meters.values()):
            return _invalid(f"A meter with event_name {params['event_name']!r} already exists.", "event_name")
        now = int(self.clock())
        meter = {
            "id": self._next_id("mtr"), "object": "billing.meter", "created": now, "updated": now,
            "display_name": params["display_name"], "event_name": params["event_name"],
            "event_time_window": params.get("event_time_window"), "livemode": False, "status": "active",
            "status_transitions": {"deactivated_at": None},
            "default_aggregation": {"formula": formula},
            "customer_mapping": {"type": "by_id", "event_payload_key":
                                 (params.get("customer_mapping") or {}).get("event_payload_key", "stripe_customer_id")},
            "value_settings": {"event_payload_key":
                               (params.get("value_settings") or {}).get("event_payload_key", "value")},
        }
        self.meters[meter["id"]] = meter
        return Response(200, meter)

    def _meter_list(self, query: dict[str, str]) -> Response:
        if unknown := sorted(set(query) - {"limit", "starting_after", "status"}):
            return _invalid(f"Received unknown parameter: {unknown[0]}", unknown[0], "parameter_unknown")
        limit = int(query.get("limit", "10"))
        found = [m for m in self.meters.values() if query.get("status") in (None, m["status"])]
        if after := query.get("starting_after"):
            ids = [m["id"] for m in found]
            found = found[ids.index(after) + 1:] if after in ids else []
        return Response(200, {"object": "list", "url": "/v1/billing/meters", "has_more": len(found) > limit,
                              "data": found[:limit]})

    # ------------------------------------------------------------ events

    def _validate(self, event: dict[str, Any]) -> tuple[str, str | None, str] | None:
        """(code, param, message) of the first problem, or None."""
        meter = self._active_meter(event.get("event_name") or "")
        if meter is None:
            return "no_meter", "event_name", f"No active meter was found for event_name {event.get('event_name')!r}."
        payload = event.get("payload") or {}
        customer_key = meter["customer_mapping"]["event_payload_key"]
        value_key = meter["value_settings"]["event_payload_key"]
        customer = payload.get(customer_key)
        if not customer:
            return "meter_event_no_customer_defined", f"payload[{customer_key}]", "No customer was provided."
        if customer not in self.customers:
            return "meter_event_customer_not_found", f"payload[{customer_key}]", f"No such customer: {customer!r}"
        if meter["default_aggregation"]["formula"] != "count":
            raw = payload.get(value_key)
            if raw is None:
                return "meter_event_value_not_found", f"payload[{value_key}]", "The payload has no value."
            try:
                value = Decimal(str(raw))
            except InvalidOperation:
                return "meter_event_invalid_value", f"payload[{value_key}]", f"Invalid value {raw!r}."
            if not value.is_finite() or len(value.normalize().as_tuple().digits) > 15:
                return "meter_event_invalid_value", f"payload[{value_key}]", f"Invalid value {raw!r}."
        now = self.clock()
        if event["timestamp"] < now - MAX_AGE_SECONDS:
            return "timestamp_too_far_in_past", "timestamp", "The timestamp must be within the past 35 days."
        if event["timestamp"] > now + MAX_AHEAD_SECONDS:
            return "timestamp_in_future", "timestamp", "The timestamp must be at most 5 minutes in the future."
        return None

    def _record(self, event: dict[str, Any]) -> dict[str, Any]:
        stored = {"object": "billing.meter_event", "created": int(self.clock()), "event_name": event["event_name"],
                  "identifier": event["identifier"], "livemode": False,
                  "payload": {k: str(v) for k, v in (event.get("payload") or {}).items()},
                  "timestamp": int(event["timestamp"])}
        self.events[stored["identifier"]] = stored
        return stored

    def _event_create(self, params: dict[str, Any]) -> Response:
        if unknown := sorted(set(params) - {"event_name", "payload", "identifier", "timestamp"}):
            return _invalid(f"Received unknown parameter: {unknown[0]}", unknown[0], "parameter_unknown")
        if not params.get("event_name"):
            return _invalid("Missing required param: event_name.", "event_name", "parameter_missing")
        raw_ts = params.get("timestamp", str(int(self.clock())))
        if not str(raw_ts).isdigit():
            return _invalid(f"Invalid integer: {raw_ts}", "timestamp")
        identifier = params.get("identifier") or f"sandbox-{secrets.token_hex(8)}"
        if len(identifier) > 100:
            return _invalid("identifier must be at most 100 characters.", "identifier")
        if identifier in self.events:
            return _invalid(f"An event with identifier {identifier!r} already exists.", "identifier", None)
        event = {**params, "identifier": identifier, "timestamp": int(raw_ts)}
        if (problem := self._validate(event)) is not None:
            code, param, message = problem
            return _invalid(message, param, code)
        return Response(200, self._record(event))

    def _session_create(self) -> Response:
        token = f"mes_tok_{secrets.token_hex(16)}"
        now = self.clock()
        self.sessions[token] = now + SESSION_SECONDS
        return Response(200, {"id": self._next_id("mes"), "object": "v2.billing.meter_event_session",
                              "authentication_token": token, "created": _iso(now),
                              "expires_at": _iso(now + SESSION_SECONDS), "livemode": False})

    def _stream(self, params: dict[str, Any]) -> Response:
        events = params.get("events") if isinstance(params, dict) else None
        if not isinstance(events, list) or not events:
            return _invalid("events is required and must be a non-empty array.", "events")
        if len(events) > STREAM_MAX_EVENTS:
            return _invalid(f"At most {STREAM_MAX_EVENTS} events can be sent in one request.", "events")
        accepted = []
        for index, raw in enumerate(events):
            if not isinstance(raw, dict) or not raw.get("event_name") or not isinstance(raw.get("payload"), dict):
                return _invalid(f"events[{index}] needs event_name and payload.", f"events[{index}]")
            stamp = raw.get("timestamp")
            try:
                seconds = (dt.datetime.fromisoformat(stamp).timestamp() if stamp else self.clock())
            except (TypeError, ValueError):
                return _invalid(f"events[{index}].timestamp is not an ISO 8601 time.", f"events[{index}].timestamp")
            accepted.append({**raw, "identifier": raw.get("identifier") or f"sandbox-{secrets.token_hex(8)}",
                             "timestamp": int(seconds)})
        for event in accepted:  # validation is asynchronous in Stripe: the request itself succeeds
            if event["identifier"] in self.events:
                continue
            if (problem := self._validate(event)) is not None:
                self.stream_errors.append({"code": problem[0], "error_message": problem[2],
                                           "request": {"identifier": event["identifier"]}})
                continue
            self._record(event)
        return Response(200, {})

    # ------------------------------------------------------------ summaries

    def _summaries(self, meter_id: str, query: dict[str, str]) -> Response:
        meter = self.meters.get(meter_id)
        if meter is None:
            return _error(404, "invalid_request_error", f"No such billing meter: '{meter_id}'", "resource_missing")
        if unknown := sorted(set(query) - _SUMMARY_PARAMS):
            return _invalid(f"Received unknown parameter: {unknown[0]}", unknown[0], "parameter_unknown")
        for required in ("customer", "start_time", "end_time"):
            if not query.get(required):
                return _invalid(f"Missing required param: {required}.", required, "parameter_missing")
        if not (query["start_time"].isdigit() and query["end_time"].isdigit()):
            return _invalid("start_time and end_time must be integers.", "start_time")
        start, end = int(query["start_time"]), int(query["end_time"])
        if start % 60 or end % 60:
            return _invalid("start_time and end_time must be aligned to minute boundaries.", "start_time")
        if end <= start:
            return _invalid("end_time must be after start_time.", "end_time")
        window = query.get("value_grouping_window")
        if window not in (None, "hour", "day"):
            return _invalid("value_grouping_window must be hour or day.", "value_grouping_window")
        step = {"hour": 3600, "day": 86400}.get(window or "", end - start)
        customer_key = meter["customer_mapping"]["event_payload_key"]
        value_key = meter["value_settings"]["event_payload_key"]
        formula = meter["default_aggregation"]["formula"]
        mine = sorted((e for e in self.events.values() if e["event_name"] == meter["event_name"]
                       and e["payload"].get(customer_key) == query["customer"]), key=lambda e: e["timestamp"])
        summaries = []
        for bucket in range(start, end, step):
            inside = [e for e in mine if bucket <= e["timestamp"] < min(bucket + step, end)]
            values = [Decimal(e["payload"].get(value_key, "0")) for e in inside]
            aggregated = {"sum": sum(values, Decimal(0)), "count": Decimal(len(values)),
                          "last": values[-1] if values else Decimal(0)}[formula]
            summaries.append({"id": f"mtrusg_{meter_id[4:]}_{bucket}", "object": "billing.meter_event_summary",
                              "aggregated_value": float(aggregated), "start_time": bucket,
                              "end_time": min(bucket + step, end), "livemode": False, "meter": meter_id})
        limit = int(query.get("limit", "10"))
        if after := query.get("starting_after"):
            ids = [s["id"] for s in summaries]
            summaries = summaries[ids.index(after) + 1:] if after in ids else []
        return Response(200, {"object": "list", "url": f"/v1/billing/meters/{meter_id}/event_summaries",
                              "has_more": len(summaries) > limit, "data": summaries[:limit]})
