"""Looking up and building connectors for configured connections."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from connectors import registry
from connectors.base import Connector
from connectors.cache import cached
from connectors.errors import NeedsConfiguration
from connectors.models import Connection
from connectors.url_policy import connection_config_validate


def _the_active(label: str, **lookup: str) -> Connection:
    connections = list(Connection.objects.filter(is_active=True, **lookup)[:2])
    if not connections:
        raise NeedsConfiguration(f"no active {label} connection is configured")
    if len(connections) > 1:
        raise NeedsConfiguration(f"more than one active {label} connection; deactivate all but one")
    return connections[0]


def connection_for_role(role: str) -> Connection:
    """The active connection playing ``role``; NeedsConfiguration if none or several."""
    return _the_active(role, role=role)


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
    connector = cls(config=connection.config, credentials=connection.credentials)
    _connectors[connection.pk] = (connection.updated_at, connector)
    return connector


def webhook_secrets_for(source: str) -> list[str]:
    """Every active secret of every active connection of vendor ``source`` (rotation).
    Read on every webhook, so cached for a few seconds: add the new secret before
    rotating it at the vendor, as the rotation procedure says anyway."""

    def load() -> list[str]:
        found: list[str] = []
        for connection in Connection.objects.filter(vendor=source, is_active=True):
            found.extend(connection.webhook_secrets())
        return found

    return cached(("webhook_secrets", source), load)


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


def connection_for_vendor(vendor: str) -> Connection:
    """The active connection of ``vendor`` (source systems are addressed by vendor:
    an event's source and a record's ``SourceRef.system`` are the vendor name)."""
    return _the_active(vendor, vendor=vendor)


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
