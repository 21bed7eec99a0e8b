"""JSON-RPC client for a Tryton 8.x server: sessions, context, Tryton's JSON types,
and the one place where Tryton's failures become ``connectors.errors``.

No business logic here; ``connector.py`` decides what to call.

Wire format (verified against trytond 8.2): ``POST <url>/<db>/rpc/`` with
``{"id", "method", "params"}``; model calls are ``model.<model>.<method>`` whose
params end with the context dict (mandatory); wizard calls are
``wizard.<name>.create|execute|delete``. Authentication is
``Authorization: Session base64(login:user_id:key)`` after ``common.db.login``.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import httpx

from connectors import http
from connectors.errors import ConnectorError, NeedsConfiguration, Permanent, Retryable

# Error types (first element of the "error" array) that mean "try again": Tryton's
# optimistic locking and SQLite/PostgreSQL lock contention.
_TRANSIENT_MARKERS = (
    "ConcurrencyException",
    "TransactionError",
    "database is locked",
    "could not serialize",
    "deadlock detected",
    "LockNotAvailable",
    "could not obtain lock",
)
# A missing database answers 404: the connection names the wrong one, a person must act.
STATUS_TABLE = http.status_table({404: NeedsConfiguration})
# JSON-RPC calls are all POSTs; these only read, so a timeout or 5xx cannot have changed
# the ERP (``connectors.http``). Wizards and every other model method may write.
READ_ONLY_METHODS = frozenset({"read", "search", "search_read", "search_count", "get_preferences"})


def is_read_only(method: str) -> bool:
    """``common.*`` (login, version) and the read-only model methods."""
    if method.startswith("common."):
        return True
    return method.startswith("model.") and method.rsplit(".", 1)[-1] in READ_ONLY_METHODS


def encode(value: Any) -> Any:
    """Python -> Tryton JSON: Decimal, date, datetime, time, timedelta, bytes."""
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {
            "__class__": "datetime", "year": value.year, "month": value.month, "day": value.day,
            "hour": value.hour, "minute": value.minute, "second": value.second,
            "microsecond": value.microsecond,
        }
    if isinstance(value, dt.date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, dt.time):
        return {
            "__class__": "time", "hour": value.hour, "minute": value.minute,
            "second": value.second, "microsecond": value.microsecond,
        }
    if isinstance(value, dt.timedelta):
        return {"__class__": "timedelta", "seconds": value.total_seconds()}
    if isinstance(value, bytes | bytearray):
        return {"__class__": "bytes", "base64": base64.b64encode(value).decode()}
    if isinstance(value, Mapping):
        return {key: encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [encode(item) for item in value]
    return value


def _decode_object(obj: dict[str, Any]) -> Any:
    kind = obj.get("__class__")
    if kind == "Decimal":
        return Decimal(obj["decimal"])
    if kind == "date":
        return dt.date(obj["year"], obj["month"], obj["day"])
    if kind == "datetime":
        return dt.datetime(
            obj["year"], obj["month"], obj["day"], obj["hour"], obj["minute"], obj["second"],
            obj.get("microsecond", 0),
        )
    if kind == "time":
        return dt.time(obj["hour"], obj["minute"], obj["second"], obj.get("microsecond", 0))
    if kind == "timedelta":
        return dt.timedelta(seconds=obj["seconds"])
    if kind == "bytes":
        return base64.b64decode(obj["base64"])
    return obj


def decode(text: str | bytes) -> Any:
    """Tryton JSON -> Python (inverse of ``encode``)."""
    return json.loads(text, object_hook=_decode_object)


class TrytonWarning(Permanent):
    """A ``UserWarning``: the ERP asks a person to confirm. ``name`` is the key a
    ``res.user.warning`` record must carry to confirm it (what the Tryton client
    creates when the user answers yes)."""

    def __init__(self, message: str, *, name: str):
        super().__init__(message)
        self.name = name


def error_from_payload(method: str, error: Any) -> Exception:
    """Map the ``error`` member of a JSON-RPC answer (HTTP 200) to the taxonomy.

    ``["UserError", [message, description, domain]]`` and ``["UserWarning", [name,
    message, description]]`` are the ERP refusing the document: Permanent with the
    message. Lock contention is Retryable. Anything else (``[str(exc), traceback]``)
    is Permanent with a short excerpt, never the traceback.
    """
    if isinstance(error, list | tuple) and error:
        kind, args = error[0], (error[1] if len(error) > 1 else None)
    else:
        kind, args = error, None
    kind_text = str(kind)
    if kind_text == "UserError":
        message, description = (list(args) + ["", ""])[:2] if isinstance(args, list | tuple) else (args, "")
        text = http.excerpt(message) + (f" ({http.excerpt(description)})" if description else "")
        return Permanent(f"Tryton refused {method}: {text}")
    if kind_text == "UserWarning":
        name, message = (list(args) + ["", ""])[:2] if isinstance(args, list | tuple) else ("", args)
        return TrytonWarning(f"Tryton warning on {method} ({name}): {http.excerpt(message)}", name=str(name))
    if kind_text == "LoginException":
        return NeedsConfiguration(f"Tryton asks for more login parameters on {method}: {http.excerpt(args)}")
    if any(marker.lower() in kind_text.lower() for marker in _TRANSIENT_MARKERS):
        return Retryable(f"Tryton lock contention on {method}: {http.excerpt(kind_text)}")
    return Permanent(f"Tryton failed on {method}: {http.excerpt(kind_text)}")


def error_from_status(method: str, response: httpx.Response, *, database: str) -> ConnectorError:
    """Map a non-200 HTTP answer to the taxonomy (the client logs in again on 401)."""
    status = response.status_code
    if status == 401:
        message = "Tryton rejected the hub's credentials"
    elif status == 403:
        message = f"Tryton forbids {method} for the hub user (HTTP 403)"
    elif status == 404:
        message = f"Tryton database {database!r} not found (HTTP 404)"
    elif status == 429:
        message = f"Tryton rate-limited {method} (HTTP 429)"
    elif status == 423:
        message = f"Tryton record locked during {method} (HTTP 423)"
    else:
        body = http.excerpt(response.text) if response.text else ""
        message = f"Tryton answered HTTP {status} to {method}: {body}"
    return http.status_error(response, message, table=STATUS_TABLE)


class TrytonClient:
    """One user session against one Tryton database.

    Logs in lazily on the first call, fetches the user's preferences once and sends
    them as the context of every call (the server does not add them), with the
    caller's ``context`` merged on top. A model call answered 401 (expired session,
    or a ``fresh_session`` method after idling) logs in again and is retried once:
    a 401 means the server did not run the method, so the retry is safe.
    """

    def __init__(
        self,
        url: str,
        database: str,
        login: str,
        password: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        language: str = "en",
        transport: httpx.BaseTransport | None = None,
    ):
        self.url = url.rstrip("/")
        self.database = database
        self.login_name = login
        self._password = password
        self.language = language
        self.read_timeout = read_timeout
        self._http = http.client(timeout=read_timeout, connect_timeout=connect_timeout, transport=transport)
        self._ids = itertools.count(1)
        self._auth: str | None = None
        self._preferences: dict[str, Any] | None = None
        self.user_id: int | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.url}/{self.database}/rpc/"

    def _post(self, method: str, params: list[Any], *, auth: bool) -> httpx.Response:
        headers = {"Authorization": self._auth} if auth and self._auth else {}
        payload = {"id": next(self._ids), "method": method, "params": encode(params)}
        # 401 comes back to the caller, which logs in again: the server did not run the method.
        return http.request(
            self._http, "POST", self.endpoint, vendor="Tryton", what=method, error_for=self._error_for,
            idempotent=is_read_only(method), accept={401}, content=json.dumps(payload),
            headers={"Content-Type": "application/json", **headers},
        )

    def _error_for(self, response: httpx.Response, *, what: str) -> ConnectorError:
        return error_from_status(what, response, database=self.database)

    def _result(self, method: str, response: httpx.Response) -> Any:
        if response.status_code != 200:
            raise error_from_status(method, response, database=self.database)
        try:
            body = decode(response.content)
        except ValueError as exc:
            raise Retryable(f"Tryton sent a non-JSON answer to {method}: {http.excerpt(response.text)}",
                            http_status=200, outcome_unknown=not is_read_only(method)) from exc
        if isinstance(body, dict) and body.get("error") is not None:
            raise error_from_payload(method, body["error"])
        if not isinstance(body, dict) or "result" not in body:
            raise Permanent(f"Tryton sent an unexpected answer to {method}: {http.excerpt(body)}")
        return body["result"]

    def login(self) -> None:
        """Open a session (and fetch the preferences the first time)."""
        method = "common.db.login"
        response = self._post(method, [self.login_name, {"password": self._password}, self.language], auth=False)
        if response.status_code == 401:
            raise NeedsConfiguration("Tryton rejected the hub's credentials", http_status=401)
        result = self._result(method, response)
        user_id, key = result[0], result[1]
        token = base64.b64encode(f"{self.login_name}:{user_id}:{key}".encode()).decode()
        self._auth = f"Session {token}"
        self.user_id = user_id
        if self._preferences is None:
            self._preferences = dict(self._rpc("model.res.user.get_preferences", [True, {}], relogin=False))

    @property
    def preferences(self) -> dict[str, Any]:
        if self._preferences is None:
            self.login()
        assert self._preferences is not None
        return dict(self._preferences)

    def _rpc(self, method: str, params: list[Any], *, relogin: bool = True) -> Any:
        if self._auth is None:
            self.login()
        response = self._post(method, params, auth=True)
        if response.status_code == 401 and relogin:
            self._auth = None
            self.login()
            response = self._post(method, params, auth=True)
        if response.status_code == 401:
            raise NeedsConfiguration(
                f"Tryton rejected the hub's session for {method} after a fresh login", http_status=401)
        return self._result(method, response)

    def _context(self, context: Mapping[str, Any] | None) -> dict[str, Any]:
        return {**self.preferences, **(context or {})}

    def call(self, model: str, method: str, *args: Any, context: Mapping[str, Any] | None = None) -> Any:
        """``model.<model>.<method>(*args, context)``; returns the decoded result."""
        return self._rpc(f"model.{model}.{method}", [*args, self._context(context)])

    def wizard(self, name: str, method: str, *args: Any, context: Mapping[str, Any] | None = None) -> Any:
        """``wizard.<name>.<create|execute|delete>(*args, context)``."""
        return self._rpc(f"wizard.{name}.{method}", [*args, self._context(context)])

    def close(self) -> None:
        self._http.close()
