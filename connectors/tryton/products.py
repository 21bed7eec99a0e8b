"""Tryton's item master for the hub: products by SKU, list prices per company.

* A SKU is one ``product.template`` of type ``service`` with one variant whose
  ``suffix_code`` is the SKU, so ``product.product.code`` = SKU (unique among active
  variants). A raw RPC template ``create`` makes no variant: it is created inline.
* Every hub product gets the accounting category named by the connection's
  ``product_category`` (default ``Hub catalog``); the hub creates it once with each
  configured company's default revenue account, so invoices posted against these
  products book revenue by product.
* ``list_price`` is a per-company MultiValue: written under ``context.company``.
* Retiring a SKU deactivates the template and its variant; nothing is deleted.

Everything is found by code before anything is created, so a retry after an unknown
outcome updates what the first attempt made instead of creating a second product.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from canonical.contracts import PriceV1, ProductV1
from canonical.money import to_major, to_minor
from connectors.base import ExternalDocument, TargetProduct
from connectors.errors import NeedsConfiguration, Permanent, Retryable

if TYPE_CHECKING:
    from connectors.tryton.connector import TrytonConnector

TEMPLATE, VARIANT, CATEGORY = "product.template", "product.product", "product.category"
DEFAULT_CATEGORY = "Hub catalog"
_FIELDS = ["id", "code", "active", "template", "template.name", "template.active"]


class ProductMaster:
    def __init__(self, connector: TrytonConnector):
        self.connector = connector
        self._category: int | None = None
        self._uom: int | None = None

    @property
    def client(self):
        return self.connector.client

    def _companies(self) -> dict[str, int]:
        return {code: int(company) for code, company in (self.connector.config.get("companies") or {}).items()}

    def variant(self, sku: str) -> dict[str, Any] | None:
        found = self.client.call(VARIANT, "search_read", [("code", "=", sku)], 0, 1, [("id", "ASC")], _FIELDS,
                                 context={"active_test": False})
        return found[0] if found else None

    def category(self) -> int:
        """The hub's accounting category, created with each company's revenue account."""
        if self._category is not None:
            return self._category
        name = self.connector.config.get("product_category") or DEFAULT_CATEGORY
        ids = self.client.call(CATEGORY, "search", [("name", "=", name), ("accounting", "=", True)], 0, 1, None)
        if ids:
            self._category = ids[0]
            return self._category
        companies = self._companies()
        if not companies:
            raise NeedsConfiguration("the Tryton connection names no companies for the product category")
        accounts = {code: self.connector._default_accounts(company)[0] for code, company in companies.items()}
        first, *rest = companies.items()
        category, = self.client.call(CATEGORY, "create", [{"name": name, "accounting": True,
                                                           "account_revenue": accounts[first[0]]}],
                                     context={"company": first[1]})
        for code, company in rest:
            self.client.call(CATEGORY, "write", [category], {"account_revenue": accounts[code]},
                             context={"company": company})
        self._category = category
        return category

    def _unit(self) -> int:
        if self._uom is None:
            ids = self.client.call("product.uom", "search", [("symbol", "=", "u")], 0, 1, [("id", "ASC")])
            if not ids:
                raise NeedsConfiguration("Tryton has no unit of measure 'u' (product module data)")
            self._uom = ids[0]
        return self._uom

    def upsert(self, product: ProductV1) -> ExternalDocument:
        found = self.variant(product.sku)
        if found is None:
            # Created active: Tryton refuses a suffix code on an inactive variant; a
            # retired SKU is then deactivated below like any other.
            values = {"name": product.display_name, "type": "service", "default_uom": self._unit(),
                      "account_category": self.category(),
                      "products": [["create", [{"suffix_code": product.sku,
                                                "description": product.description or ""}]]]}
            template, = self.client.call(TEMPLATE, "create", [values])
            found = self.variant(product.sku)
            if found is None:
                raise Permanent(f"Tryton created template {template} but no variant with code {product.sku}")
            if product.active:
                return ExternalDocument(external_id=str(found["id"]), number=product.sku, state="created")
        template = found["template"]
        self.client.call(TEMPLATE, "write", [template], {"name": product.display_name, "active": product.active,
                                                         "account_category": self.category()},
                         context={"active_test": False})
        self.client.call(VARIANT, "write", [found["id"]], {"active": product.active,
                                                          "description": product.description or ""},
                         context={"active_test": False})
        return ExternalDocument(external_id=str(found["id"]), number=product.sku,
                                state="updated" if product.active else "retired")

    def set_list_price(self, price: PriceV1, *, legal_entity: str) -> ExternalDocument:
        company = self.connector._company(legal_entity)
        found = self.variant(price.sku)
        if found is None:
            raise Retryable(f"product {price.sku} is not in the ERP yet")
        if price.unit_amount is None:
            raise Permanent(f"price {price.source.external_id} is tiered; Tryton keeps one list price per product")
        amount = to_major(price.unit_amount, price.currency)
        self.client.call(TEMPLATE, "write", [found["template"]], {"list_price": amount},
                         context={"company": company, "active_test": False})
        return ExternalDocument(external_id=str(found["id"]), number=price.sku, state="list_price_set")

    def snapshot(self, skus: Sequence[str]) -> dict[str, TargetProduct]:
        """Products of the hub's category and the asked SKUs, with each company's list
        price keyed by its currency."""
        category = self.category()
        records = self.client.call(
            VARIANT, "search_read", ["OR", [("template.account_category", "=", category)],
                                     [("code", "in", list(skus))]],
            0, None, [("id", "ASC")], _FIELDS, context={"active_test": False})
        snapshot: dict[str, TargetProduct] = {}
        currencies = self._company_currencies()
        templates = [r["template"] for r in records]
        prices: dict[int, dict[str, Any]] = {t: {} for t in templates}
        for code, company in self._companies().items():
            if not templates:
                break
            for row in self.client.call(TEMPLATE, "read", templates, ["id", "list_price"],
                                        context={"company": company, "active_test": False}):
                if row["list_price"] is not None:
                    currency = currencies[company]
                    prices[row["id"]][currency] = {
                        "currency": currency, "unit_amount": to_minor(_decimal(row["list_price"]).normalize(), currency),
                        "legal_entity": code}
        for record in records:
            template = record.get("template.") or {}
            snapshot[record["code"]] = TargetProduct(
                sku=record["code"], external_id=str(record["id"]), name=template.get("name", ""),
                active=bool(record["active"] and template.get("active", True)), prices=prices[record["template"]])
        return snapshot

    def _company_currencies(self) -> dict[int, str]:
        companies = list(self._companies().values())
        rows = self.client.call("company.company", "read", companies, ["id", "currency.code"]) if companies else []
        return {row["id"]: row["currency."]["code"] for row in rows}


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))
