"""Two ERP stand-ins for the benchmarks (no network):

``bench-erp`` posts instantly, so the pipeline benchmark measures the hub alone. It takes
catalog releases (products, list prices) the same way, for the finance-isolation run during
a catalog release.

``bench-slow-erp`` is an ERP that takes ``latency_ms`` per call and serves at most
``max_concurrency`` calls at once, like an ERP API with a per-client limit: a call
beyond the limit is refused with 429 (``RateLimited``). It counts, in Redis (shared
by every worker process), the calls in progress, the peak of calls that arrived at
once, refusals and documents posted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cache
from typing import Any

import redis

# The baseline's no-op task rides along so the bench worker registers it.
from benchmarks.stub_erp import tasks  # noqa: F401
from canonical.contracts import InvoiceV1, PaymentV1, PriceV1, ProductV1
from connectors.base import Connector, ExternalDocument, TargetProduct
from connectors.errors import RateLimited
from connectors.registry import register

# Increment the in-progress count and raise the recorded peak; returns the new count.
_ENTER = """
local current = redis.call('INCR', KEYS[1])
local peak = tonumber(redis.call('GET', KEYS[2]) or '0')
if current > peak then redis.call('SET', KEYS[2], current) end
return current
"""


def _document(reference: str) -> ExternalDocument:
    return ExternalDocument(external_id=f"erp-{reference}", number=reference[-8:], state="posted")


@register("bench-erp")
class InstantErpConnector(Connector):
    """An ERP that accepts every document at once (invoices, payments, products, list prices)."""

    def find_invoice(self, invoice: InvoiceV1, *, legal_entity: str) -> ExternalDocument | None:
        return None

    def post_invoice(self, invoice: InvoiceV1, *, legal_entity: str, idempotency_key: str,
                     posting: Any = None) -> ExternalDocument:
        return _document(invoice.source.external_id)

    def record_payment(self, payment: PaymentV1, *, legal_entity: str, idempotency_key: str) -> ExternalDocument:
        return _document(payment.invoice.external_id)

    def void_invoice(self, invoice: InvoiceV1, *, legal_entity: str, idempotency_key: str) -> ExternalDocument:
        return _document(invoice.source.external_id)

    def upsert_product(self, product: ProductV1, *, idempotency_key: str) -> ExternalDocument:
        return _document(product.sku)

    def catalog_snapshot(self, skus: Sequence[str]) -> dict[str, TargetProduct]:
        return {}  # it keeps nothing: reconciliation is not what the benchmark measures

    def set_list_price(self, price: PriceV1, *, legal_entity: str, idempotency_key: str) -> ExternalDocument:
        return _document(f"{price.sku}-{legal_entity}")


@cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


class SlowErpCounters:
    """The sandbox's counters in Redis, readable by the benchmark runner."""

    def __init__(self, url: str, prefix: str):
        self.client = _redis(url)
        self.keys = {name: f"{prefix}:{name}" for name in ("current", "peak", "refused", "posted")}
        self._enter = self.client.register_script(_ENTER)

    def reset(self) -> None:
        self.client.delete(*self.keys.values())

    def read(self) -> dict[str, int]:
        values = self.client.mget(*self.keys.values())
        return {name: int(value or 0) for name, value in zip(self.keys, values, strict=True)}

    def call(self, reference: str, *, latency: float, limit: int) -> ExternalDocument:
        current = int(self._enter(keys=[self.keys["current"], self.keys["peak"]]))
        try:
            if current > limit:
                self.client.incr(self.keys["refused"])
                raise RateLimited(f"{current} concurrent calls, the limit is {limit}", retry_after=1, http_status=429)
            time.sleep(latency)
            self.client.incr(self.keys["posted"])
            return _document(reference)
        finally:
            self.client.decr(self.keys["current"])


@register("bench-slow-erp")
class SlowErpConnector(Connector):
    """Config: ``redis_url``, ``prefix``, ``latency_ms``, ``max_concurrency``."""

    def _call(self, reference: str) -> ExternalDocument:
        counters = SlowErpCounters(self.config["redis_url"], self.config["prefix"])
        return counters.call(
            reference, latency=self.config["latency_ms"] / 1000, limit=self.config["max_concurrency"]
        )

    def find_invoice(self, invoice: InvoiceV1, *, legal_entity: str) -> ExternalDocument | None:
        return None

    def post_invoice(self, invoice: InvoiceV1, *, legal_entity: str, idempotency_key: str,
                     posting: Any = None) -> ExternalDocument:
        return self._call(invoice.source.external_id)

    def record_payment(self, payment: PaymentV1, *, legal_entity: str, idempotency_key: str) -> ExternalDocument:
        return self._call(payment.invoice.external_id)

    def void_invoice(self, invoice: InvoiceV1, *, legal_entity: str, idempotency_key: str) -> ExternalDocument:
        return self._call(invoice.source.external_id)
