"""The generic product-platform connector: a company's own catalog service.

Config: ``url``; ``auth`` (``{"type": "bearer"}`` or ``{"type": "api_key", "header":
"X-Api-Key"}``); ``paging`` (see ``client.py``); ``mapping`` (JMESPath per canonical
field, see ``mapping.py``). Credentials: ``token`` or ``api_key``, and
``webhook_secrets`` for the signed ``catalog.changed`` webhook.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from connectors.base import CatalogItem, CatalogPage, Connector
from connectors.errors import NeedsConfiguration
from connectors.product_platform import mapping
from connectors.product_platform.client import PlatformClient
from connectors.product_platform.events import translate
from connectors.product_platform.webhooks import CatalogWebhookReceiver
from connectors.registry import register, register_translator, register_webhook

VENDOR = "product_platform"


@register(VENDOR)
class ProductPlatformConnector(Connector):
    """CatalogSource over a paged JSON API, mapped by the connection's JMESPath mapping."""

    secret_fields = ("token", "api_key", "webhook_secrets")

    def __init__(self, *, config: Mapping[str, Any], credentials: Mapping[str, Any], transport: Any = None,
                 name: str = ""):
        super().__init__(config=config, credentials=credentials, transport=transport, name=name)
        try:
            self.mapping = mapping.mapping_compile(self.config.get("mapping"))
        except mapping.MappingConfigError as exc:
            raise NeedsConfiguration(f"connection {self.name}: {exc}") from None

    @staticmethod
    def config_preview(config: Mapping[str, Any], sample: Any) -> dict[str, Any]:
        """What ``config``'s mapping makes of one sample record (the admin shows it
        before the connection is saved): ``{"ok": bool, "product"/"prices" | "error"}``."""
        return mapping.mapping_preview(config.get("mapping"), sample)

    def build_client(self) -> PlatformClient:
        if not self.config.get("url"):
            raise NeedsConfiguration(f"product platform connection {self.name} has no url")
        return PlatformClient(
            self.config["url"], auth=self.config.get("auth") or {}, credentials=self.credentials,
            paging=self.config.get("paging"), timeout=float(self.config.get("timeout", 20)),
            page_retries=int(self.config.get("page_retries", 3)),
            max_retry_wait=float(self.config.get("max_retry_wait", 30)), transport=self.transport,
        )

    def catalog_pages(self, *, updated_since: dt.datetime | None) -> Iterator[CatalogPage]:
        for number, items in self.client.pages(updated_since=updated_since):
            yield CatalogPage(number=number, items=items)

    def catalog_item_key(self, item: Mapping[str, Any]) -> str | None:
        return mapping.item_key(self.mapping, item)

    def catalog_item_updated_at(self, item: Mapping[str, Any]) -> dt.datetime | None:
        return mapping.item_updated_at(self.mapping, item)

    def catalog_item_map(self, item: Mapping[str, Any], *, label: str = "item") -> CatalogItem:
        return mapping.item_map(self.mapping, item, system=self.name, label=label)


register_webhook(VENDOR, CatalogWebhookReceiver())
register_translator(VENDOR, translate)
