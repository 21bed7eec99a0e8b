"""Connectors and webhook receivers, registered by a stable vendor name.

Vendor packages register themselves when their ``connector`` module is imported;
``ConnectorsConfig.ready`` imports every package listed in ``HUB_CONNECTOR_PACKAGES``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from connectors.base import Connector, WebhookReceiver

C = TypeVar("C", bound=type[Connector])

_connectors: dict[str, type[Connector]] = {}
_receivers: dict[str, WebhookReceiver] = {}


class UnknownVendor(LookupError):
    pass


def register(vendor: str) -> Callable[[C], C]:
    def decorate(cls: C) -> C:
        cls.vendor = vendor
        _connectors[vendor] = cls
        return cls

    return decorate


def declared_secret_fields() -> frozenset[str]:
    """Every credential key a registered connector declares secret (lower case)."""
    return frozenset(field.lower() for cls in _connectors.values() for field in cls.secret_fields)


def register_webhook(source: str, receiver: WebhookReceiver) -> None:
    _receivers[source] = receiver


def connector_class(vendor: str) -> type[Connector]:
    try:
        return _connectors[vendor]
    except KeyError:
        raise UnknownVendor(f"no connector registered for {vendor!r}") from None


def webhook_receiver(source: str) -> WebhookReceiver:
    try:
        return _receivers[source]
    except KeyError:
        raise UnknownVendor(f"no webhook receiver registered for {source!r}") from None


def is_known(vendor: str) -> bool:
    return vendor in _connectors or vendor in _receivers


Translator = Callable[[str, dict], list]
_translators: dict[str, Translator] = {}


def register_translator(source: str, translate: Translator) -> None:
    """``translate(event_type, payload)`` returns the canonical facts (``canonical.events``)
    a vendor event means; it raises MappingError when the payload cannot be mapped."""
    _translators[source] = translate


def event_translator(source: str) -> Translator:
    try:
        return _translators[source]
    except KeyError:
        raise UnknownVendor(f"no event translator registered for {source!r}") from None
