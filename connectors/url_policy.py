"""The outbound URL policy: where the hub may send requests, and credentials.

Two checks, because an attacker who can edit a connection (or a vendor answer that
names a URL) could otherwise point the hub at its own network (SSRF):

* on save, ``validate_connection_url``: ``https`` only, a host and no user info,
  and for vendors with fixed API hosts (``Connector.fixed_hosts``) one of those;
* at connect time, after DNS resolution, ``PolicyTransport`` refuses any address
  that is not globally routable (loopback, private, link-local — which includes the
  cloud metadata address 169.254.169.254 —, shared, reserved, multicast), so a
  public name resolving to an internal address is caught too.

``HUB_ALLOWED_INTERNAL_HOSTS`` names the hosts exempt from both (and allowed plain
``http``): the local sandboxes, the tests and a self-hosted ERP on the private
network. Development defaults to ``localhost,127.0.0.1,::1``; production to none.

Known limit: the address is checked when the request is made and httpcore resolves
the name again to connect, so a DNS answer that changes in between (rebinding)
is not caught; an egress proxy or firewall is the complete answer.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Callable, Iterable
from fnmatch import fnmatch
from typing import Any

import httpx
from django.conf import settings

from connectors.errors import NeedsConfiguration

Resolver = Callable[[str, int], Iterable[str]]


class UrlRefused(NeedsConfiguration):
    """A connection URL, or an address it resolves to, is outside the outbound policy."""


def allowed_internal_hosts() -> frozenset[str]:
    return frozenset(host.strip().lower().strip("[]") for host in settings.HUB_ALLOWED_INTERNAL_HOSTS if host)


def _is_internal_allowed(host: str) -> bool:
    return host.lower().strip("[]") in allowed_internal_hosts()


def _fixed_hosts(vendor: str) -> tuple[str, ...]:
    from connectors import registry

    try:
        return tuple(getattr(registry.connector_class(vendor), "fixed_hosts", ()))
    except registry.UnknownVendor:
        return ()


def _blocked(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def validate_connection_url(url: Any, *, vendor: str) -> str:
    """Return ``url`` if the hub may use it for a ``vendor`` connection; else raise
    UrlRefused saying why. Checks the URL as written (no DNS): scheme, host, user
    info, the vendor's fixed hosts, and literal internal addresses."""
    if not isinstance(url, str) or not url.strip():
        raise UrlRefused("the URL is empty")
    parts = urllib.parse.urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if not host:
        raise UrlRefused(f"{url!r} has no host")
    if parts.username or parts.password:
        raise UrlRefused("credentials belong in the connection's credentials, not in its URL")
    if _is_internal_allowed(host):
        if parts.scheme not in ("https", "http"):
            raise UrlRefused(f"{url!r}: only http(s) URLs are allowed")
        return url
    if parts.scheme != "https":
        raise UrlRefused(f"{url!r}: only https URLs are allowed (http only for HUB_ALLOWED_INTERNAL_HOSTS)")
    fixed = _fixed_hosts(vendor)
    if fixed and not any(fnmatch(host, pattern) for pattern in fixed):
        raise UrlRefused(f"{vendor} API hosts are {', '.join(fixed)}; {host!r} is not one of them")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and _blocked(str(literal)):
        raise UrlRefused(f"{host} is an internal address; name it in HUB_ALLOWED_INTERNAL_HOSTS to allow it")
    return url


def connection_config_validate(vendor: str, config: Any) -> None:
    """Validate every URL a ``vendor`` connection's config names (``Connector.url_fields``);
    raise UrlRefused naming the field."""
    from connectors import registry

    if not isinstance(config, dict):
        return
    try:
        fields = getattr(registry.connector_class(vendor), "url_fields", ())
    except registry.UnknownVendor:
        return
    for field in fields:
        if config.get(field) not in (None, ""):
            try:
                validate_connection_url(config[field], vendor=vendor)
            except UrlRefused as exc:
                raise UrlRefused(f"config.{field}: {exc}") from None


def _resolve(host: str, port: int) -> list[str]:
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def check_destination(host: str, port: int, *, resolve: Resolver = _resolve) -> None:
    """Raise UrlRefused if ``host`` resolves to an address that is not globally
    routable, unless it is an allowed internal host."""
    if _is_internal_allowed(host):
        return
    try:
        addresses = list(resolve(host, port))
    except OSError as exc:
        raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from None
    refused = sorted({address for address in addresses if _blocked(address)})
    if refused:
        raise UrlRefused(
            f"{host} resolves to internal address {', '.join(refused)}; outbound calls to internal "
            "networks need the host in HUB_ALLOWED_INTERNAL_HOSTS"
        )


class PolicyTransport(httpx.BaseTransport):
    """An httpx transport that checks every request's destination, then sends it."""

    def __init__(self, inner: httpx.BaseTransport | None = None, *, resolve: Resolver = _resolve):
        self._inner = inner if inner is not None else httpx.HTTPTransport()
        self._resolve = resolve

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise UrlRefused(f"scheme {url.scheme!r} is not allowed")
        check_destination(url.host, url.port or (443 if url.scheme == "https" else 80), resolve=self._resolve)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def guarded_transport(inner: httpx.BaseTransport | None = None) -> httpx.BaseTransport:
    """The transport every vendor client gets on the real network."""
    return PolicyTransport(inner)


def same_origin(url: str, base: str) -> bool:
    """Whether ``url`` has the scheme, host and port of ``base`` (credentials only
    ever go to the connection's own host)."""
    a, b = httpx.URL(url), httpx.URL(base)
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)
