"""Looking up and building connectors for configured connections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction

from connectors import registry
from connectors.base import Connector
from connectors.cache import cached
from connectors.errors import NeedsConfiguration
from connectors.models import Connection
from connectors.url_policy import connection_config_validate


def connection_named(name: str) -> Connection:
    """The active connection called ``name``: the ``system`` of an inbox event, a
    canonical record's source and every cross-reference is a connection's name."""
    connection = Connection.objects.filter(name=name, is_active=True).first()
    if connection is None:
        raise NeedsConfiguration(f"no active connection named {name!r}")
    return connection


def connection_vendor(name: str) -> str:
    """The vendor of the connection called ``name`` (active or not: an event it
    brought in is still processed after it is switched off). Cached briefly."""

    def load() -> str:
        vendor = Connection.objects.filter(name=name).values_list("vendor", flat=True).first()
        if vendor is None:
            raise NeedsConfiguration(f"no connection named {name!r}")
        return vendor

    return cached(("connection_vendor", name), load)


def connection_for_role(role: str, *, name: str = "") -> Connection:
    """The connection a workflow uses for ``role``, by the rule every workflow
    states: the one called ``name`` when its data names one (a legal entity names
    its ERP), else the only active connection of the role. NeedsConfiguration when
    the named one is not an active ``role`` connection, when none is active, or when
    several are and nothing names one."""
    if name:
        connection = Connection.objects.filter(name=name, role=role, is_active=True).first()
        if connection is None:
            raise NeedsConfiguration(f"{name!r} is not an active {role} connection")
        return connection
    connections = list(Connection.objects.filter(role=role, is_active=True)[:2])
    if not connections:
        raise NeedsConfiguration(f"no active {role} connection is configured")
    if len(connections) > 1:
        raise NeedsConfiguration(
            f"several {role} connections are active and nothing names one (set the legal entity's {role} connection)"
        )
    return connections[0]


_connectors: dict[int, tuple[object, Connector]] = {}


def connector_for(connection: Connection) -> Connector:
    """The connector for ``connection``, reused within this process while the
    connection is unchanged: its HTTP client, session (a Tryton login costs a third
    of a second) and look-up caches outlive one call. Saving the connection (new
    credentials, config) builds a fresh one. Callers do not close it."""
    cached = _connectors.get(connection.pk)
    if cached is not None and cached[0] == connection.updated_at:
        return cached[1]
    if cached is not None:
        cached[1].close()
    cls = registry.connector_class(connection.vendor)
    connector = cls(config=connection.config, credentials=connection.credentials, name=connection.name)
    _connectors[connection.pk] = (connection.updated_at, connector)
    return connector


@dataclass(frozen=True)
class WebhookSender:
    """A connection a webhook may come from, with the secrets that sign it."""

    name: str
    vendor: str
    secrets: tuple[str, ...]


def webhook_senders(source: str) -> list[WebhookSender]:
    """Who may have sent a webhook to ``/api/webhooks/<source>/``: the active
    connection called ``source``, else every active connection of vendor ``source``
    (the signature then tells which one). Read on every webhook, so cached for a few
    seconds: add the new secret before rotating it at the vendor, as the rotation
    procedure says anyway."""

    def load() -> list[WebhookSender]:
        connections = list(Connection.objects.filter(name=source, is_active=True)) or list(
            Connection.objects.filter(vendor=source, is_active=True).order_by("name")
        )
        return [WebhookSender(c.name, c.vendor, tuple(c.webhook_secrets())) for c in connections]

    return cached(("webhook_senders", source), load)


@transaction.atomic
def connection_upsert(
    *, name: str, vendor: str, role: str, config: dict[str, Any], credentials: dict[str, Any]
) -> Connection:
    """Create or update the connection; raises UnknownVendor, or UrlRefused when a URL
    in ``config`` breaks the outbound URL policy (``connectors.url_policy``)."""
    if not registry.is_known(vendor):
        raise registry.UnknownVendor(f"no connector or webhook receiver is registered for {vendor!r}")
    connection_config_validate(vendor, config)  # UrlRefused: the outbound URL policy
    connection, _ = Connection.objects.update_or_create(
        name=name, defaults={"vendor": vendor, "role": role, "config": config, "is_active": True}
    )
    connection.set_credentials(credentials)
    connection.save(update_fields=["encrypted_credentials", "updated_at"])
    return connection


def connection_can(connection: Connection, method: str) -> bool:
    """Whether the connection's connector class offers ``method`` (a capability check
    that builds nothing)."""
    try:
        return callable(getattr(registry.connector_class(connection.vendor), method, None))
    except registry.UnknownVendor:
        return False


def credentials_rotate() -> int:
    """Re-encrypt every connection's credentials with the newest HUB_ENCRYPTION_KEYS
    key, each in its own short transaction with the row locked; returns how many rows
    changed. Raises ImproperlyConfigured (nothing half-done to that row) if a row
    cannot be read with any configured key."""
    from connectors import secrets

    rotated = 0
    for pk in Connection.objects.exclude(encrypted_credentials="").values_list("pk", flat=True):
        with transaction.atomic():
            connection = Connection.objects.select_for_update().get(pk=pk)
            token = secrets.reencrypt(connection.encrypted_credentials)
            if token != connection.encrypted_credentials:
                # update(), not save(): rotation changes no credential, so cached connectors stay valid.
                Connection.objects.filter(pk=pk).update(encrypted_credentials=token)
                rotated += 1
    return rotated
