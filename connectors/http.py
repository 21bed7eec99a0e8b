"""The one HTTP layer every vendor client sends through.

A vendor's ``client.py`` builds its ``httpx.Client`` with :func:`client` and sends
every call with :func:`request`. This module owns the rules that must not differ
between vendors:

- **Timeouts** on every client (a read timeout plus a short connect timeout).
- **Transport failures** become ``Retryable``. A request that certainly never left
  (connect error or timeout, no free pooled connection) has a known outcome; one
  that failed after sending (read/write timeout, dropped connection) leaves the
  outcome unknown unless the call is idempotent.
- **Statuses** map to the taxonomy through a table (:data:`DEFAULT_STATUS_TABLE`)
  that a vendor merges its own rows into (:func:`status_table`); a vendor's error
  function reads its error body first and falls back to its table.
- **A 5xx answer to a non-idempotent call** leaves the outcome unknown: the server
  may have committed before failing.
- **Retry-After** (seconds or HTTP-date) becomes ``retry_after`` on every retryable
  error that has none yet.
- **Accepted statuses** come back to the caller as responses (Tryton logs in again
  on 401).
- **The outbound policy**: every request of every client built here passes
  :func:`check_outbound` before it is sent; the URL policy of the security work
  installs itself with :func:`outbound_policy_set`. Redirects are never followed,
  so a vendor cannot bounce the hub to an address the policy did not see.

Idempotent means "the call cannot have changed anything the hub must look up",
so ``outcome_unknown`` is never set for it. GET, HEAD, OPTIONS, PUT and DELETE are
idempotent by default, POST and PATCH are not; a caller overrides per call (a
search sent as POST reads only). A POST carrying a vendor idempotency key (Stripe)
is safe to *repeat*, but it stays non-idempotent here: whether it created the
document is still unknown to the hub, whose bookkeeping records the attempt as
outcome-unknown; the retry under the same key then returns the first answer.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Callable, Collection, Mapping
from types import MappingProxyType
from typing import Any, Protocol

import httpx

from connectors.errors import ConnectorError, NeedsConfiguration, Permanent, RateLimited, Retryable
from connectors.url_policy import guarded_transport

StatusKey = int | str  # an exact status (429) or a class of statuses ("5xx")
StatusTable = Mapping[StatusKey, type[ConnectorError]]

DEFAULT_STATUS_TABLE: StatusTable = MappingProxyType({
    401: NeedsConfiguration,
    403: NeedsConfiguration,
    408: Retryable,
    409: Retryable,
    423: Retryable,
    429: RateLimited,
    "3xx": Permanent,  # redirects are not followed (see ``client``)
    "4xx": Permanent,
    "5xx": Retryable,
})

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

# Transport failures raised before the request left the hub.
NOT_SENT: tuple[type[httpx.RequestError], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

DEFAULT_TIMEOUT = 20.0
DEFAULT_CONNECT_TIMEOUT = 5.0
_EXCERPT = 300


class ErrorFor(Protocol):
    """A vendor's mapping of a non-accepted, non-2xx answer to the taxonomy."""

    def __call__(self, response: httpx.Response, *, what: str) -> ConnectorError: ...


OutboundPolicy = Callable[[httpx.Request], None]
_outbound_policy: OutboundPolicy | None = None


def outbound_policy_set(policy: OutboundPolicy | None) -> OutboundPolicy | None:
    """Install the check every outbound request passes before it is sent; returns the
    previous one (tests restore it). The policy raises (``NeedsConfiguration``) to
    refuse a request; a refused request was never sent. ``None`` removes it."""
    global _outbound_policy
    previous, _outbound_policy = _outbound_policy, policy
    return previous


def check_outbound(request: httpx.Request) -> None:
    """The hook point: runs for every request of every client built by :func:`client`,
    redirects included. A no-op until a policy is installed."""
    if _outbound_policy is not None:
        _outbound_policy(request)


def client(
    *,
    base_url: str = "",
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """The ``httpx.Client`` of one vendor client: timeouts, no redirects, the outbound
    policy on every request, and — on the real network — a transport that refuses
    internal addresses after DNS resolution (``connectors.url_policy``). ``transport``
    is for tests (``httpx.MockTransport``), which reach no network."""
    return httpx.Client(
        base_url=base_url.rstrip("/"),
        headers=dict(headers or {}),
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        follow_redirects=False,
        transport=transport if transport is not None else guarded_transport(),
        event_hooks={"request": [check_outbound]},
    )


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


def status_table(overrides: StatusTable | None = None, *, base: StatusTable = DEFAULT_STATUS_TABLE) -> StatusTable:
    """``base`` with a vendor's rows merged on top, read-only."""
    return MappingProxyType({**base, **(overrides or {})})


def status_class(status: int, table: StatusTable = DEFAULT_STATUS_TABLE) -> type[ConnectorError]:
    """The class for ``status``: the exact row, else its class row ("4xx"), else Permanent."""
    return table.get(status) or table.get(f"{status // 100}xx") or Permanent


def status_error(
    response: httpx.Response,
    message: str,
    *,
    table: StatusTable = DEFAULT_STATUS_TABLE,
    cls: type[ConnectorError] | None = None,
    rate_limit_wait: float | None = None,
) -> ConnectorError:
    """The error for ``response``: ``cls`` when the vendor's error body decided it,
    else the table's class for the status. Retryable errors carry Retry-After; a
    RateLimited without one waits ``rate_limit_wait`` (the vendor's documented pause)."""
    status = response.status_code
    cls = cls or status_class(status, table)
    if not issubclass(cls, Retryable):
        return cls(message, http_status=status)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if retry_after is None and issubclass(cls, RateLimited):
        retry_after = rate_limit_wait
    return cls(message, retry_after=retry_after, http_status=status)


def excerpt(text: Any, limit: int = _EXCERPT) -> str:
    """One line of at most ``limit`` characters, for error messages (never a whole body)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_idempotent(method: str, idempotent: bool | None = None) -> bool:
    """The caller's word when given, else the method's HTTP semantics."""
    return idempotent if idempotent is not None else method.upper() in IDEMPOTENT_METHODS


def transport_error(exc: httpx.RequestError, *, vendor: str, what: str, idempotent: bool) -> ConnectorError:
    """A failure without an answer. Never sent: Retryable with a known outcome. An
    unusable URL scheme: NeedsConfiguration. Otherwise the request may have landed."""
    kind = type(exc).__name__
    if isinstance(exc, httpx.UnsupportedProtocol):
        return NeedsConfiguration(f"{vendor} {what}: {kind}: {excerpt(exc)}")
    if isinstance(exc, NOT_SENT):
        return Retryable(f"{vendor} {what}: {kind} (not sent): {excerpt(exc)}")
    return Retryable(f"{vendor} {what}: {kind}: {excerpt(exc)}", outcome_unknown=not idempotent)


def _default_error_for(vendor: str) -> ErrorFor:
    def error_for(response: httpx.Response, *, what: str) -> ConnectorError:
        body = f" {excerpt(response.text)}" if response.text else ""
        return status_error(response, f"{vendor} {what}: HTTP {response.status_code}{body}")
    return error_for


def request(
    http_client: httpx.Client,
    method: str,
    url: str,
    *,
    vendor: str,
    what: str,
    error_for: ErrorFor | None = None,
    idempotent: bool | None = None,
    accept: Collection[int] = (),
    **kwargs: Any,
) -> httpx.Response:
    """Send one call and return its 2xx answer (or one whose status is in ``accept``).

    Raises the vendor's error (``error_for(response, what=what)``, else the default
    table) for any other answer, with ``outcome_unknown`` set on a 5xx answer to a
    non-idempotent call and ``retry_after`` from Retry-After when the vendor left it
    empty; raises :func:`transport_error` when there was no answer. ``kwargs`` go to
    ``httpx.Client.request`` (``params``, ``json``, ``data``, ``content``, ``headers``,
    a per-call ``timeout``). ``vendor`` and ``what`` name the call in messages.
    """
    idempotent = is_idempotent(method, idempotent)
    try:
        response = http_client.request(method, url, **kwargs)
    except httpx.RequestError as exc:
        raise transport_error(exc, vendor=vendor, what=what, idempotent=idempotent) from exc
    status = response.status_code
    if 200 <= status < 300 or status in accept:
        return response
    error = (error_for or _default_error_for(vendor))(response, what=what)
    if isinstance(error, Retryable):
        if status >= 500 and not idempotent:
            error.outcome_unknown = True
        if error.retry_after is None:
            error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
    raise error
