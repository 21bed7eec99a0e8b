"""Catalog change alerts and the drift check, as exception records for product
operations (category ``alert`` or ``drift``), each with a link to the item and an
email through Django's email backend.

* A price version whose amount moved by more than the connection's
  ``price_alert_percent`` (default 20) from the released one.
* A version whose effective date is already past when it arrives.
* A SKU retired while active subscriptions (asked of billing) or open invoices
  (the hub's own) still use one of its released prices.
* Drift: the nightly comparison of each target's products and prices with the
  released versions — missing, extra, different.

An alert already open with the same summary is not opened twice.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import structlog
from django.conf import settings
from django.core.mail import mail_admins, send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from canonical.models import CatalogVersion, CrossReference, InvoiceLine, PriceVersion, ProductVersion
from connectors.base import PriceSink, ProductSink, TargetProduct
from connectors.errors import ConnectorError
from connectors.models import Connection
from connectors.services import connector_for
from integration_hub.runtime.models import BusinessTransaction, ExceptionRecord
from integration_hub.runtime.services import enqueue_after_commit

log = structlog.get_logger(__name__)

RETIREMENT_CHECK_TASK = "hub.catalog_retirement_check"
DEFAULT_PRICE_ALERT_PERCENT = Decimal("20")
Status = CatalogVersion.Status
Category = ExceptionRecord.Category


def admin_link(version: CatalogVersion) -> str:
    return reverse(f"admin:canonical_{type(version)._meta.model_name}_change", args=[version.pk])


def _transaction(subject: str) -> BusinessTransaction:
    txn, _ = BusinessTransaction.objects.get_or_create(subject=subject, defaults={"kind": "catalog"})
    return txn


def alert_open(*, category: str, summary: str, detail: str, link: str, transaction_id=None,
               recipients: list[str] | None = None) -> ExceptionRecord | None:
    """Open the alert (once while open) and notify by email after commit."""
    summary = summary[:500]
    if ExceptionRecord.objects.filter(status=ExceptionRecord.Status.OPEN, category=category, summary=summary).exists():
        return None
    if transaction_id is None:
        transaction_id = _transaction(f"hub:catalog:{category}").pk
    record = ExceptionRecord.objects.create(
        transaction_id=transaction_id, owner_team=ExceptionRecord.Team.PRODUCT_OPERATIONS, category=category,
        summary=summary, detail=f"{detail}\n\nItem: {link}",
    )
    transaction.on_commit(lambda: _notify(record, recipients or []))
    log.warning("catalog_alert", category=category, summary=summary)
    return record


def _notify(record: ExceptionRecord, recipients: list[str]) -> None:
    subject = f"[hub] {record.get_category_display()}: {record.summary}"[:200]
    body = f"{record.detail}\n\nException record {record.pk} (product operations)."
    try:
        if recipients:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
        else:
            mail_admins(subject, body)
    except Exception as exc:  # noqa: BLE001 - a mail server down must not undo the alert
        log.warning("catalog_alert_mail_failed", record=record.pk, error=repr(exc))


def _source_config(version: CatalogVersion) -> dict[str, Any]:
    system = version.content.get("source", {}).get("system", "")
    return Connection.objects.filter(name=system).values_list("config", flat=True).first() or {}


def _recipients(config: dict[str, Any]) -> list[str]:
    value = config.get("alert_recipients") or []
    return [value] if isinstance(value, str) else list(value)


def price_change_percent(before: PriceVersion, after: PriceVersion) -> Decimal | None:
    old, new = before.unit_amount, after.unit_amount
    if old in (None, 0) or new is None:
        return None
    return (Decimal(new - old) * 100 / Decimal(old)).quantize(Decimal("0.01"))


def new_version_alerts(version: CatalogVersion) -> None:
    """Alerts a new draft raises at once (no I/O)."""
    config = _source_config(version)
    link = admin_link(version)
    if isinstance(version, PriceVersion):
        released = PriceVersion.objects.filter(price_id=version.price_id, status=Status.RELEASED).order_by(
            "-number").first()
        percent = price_change_percent(released, version) if released else None
        limit = Decimal(str(config.get("price_alert_percent", DEFAULT_PRICE_ALERT_PERCENT)))
        if percent is not None and abs(percent) > limit:
            alert_open(category=Category.ALERT, link=link, transaction_id=version.transaction_id,
                       recipients=_recipients(config),
                       summary=f"price {version.price.source_id} changes by {percent:+}% (limit {limit}%) in v"
                               f"{version.number}",
                       detail=f"{released.unit_amount} → {version.unit_amount} {version.price.currency} (minor "
                              f"units); approve or reject version {version.number}.")
    effective = version.effective_from
    if effective is not None and effective < timezone.localdate():
        alert_open(category=Category.ALERT, link=link, transaction_id=version.transaction_id,
                   recipients=_recipients(config),
                   summary=f"{version} arrived with an effective date already past ({effective})",
                   detail="It can only take effect from its release; check whether it was meant to apply earlier.")


def retirement_check_after_commit(version: ProductVersion) -> None:
    enqueue_after_commit(RETIREMENT_CHECK_TASK, version.pk)


def retirement_check(version_id: int) -> ExceptionRecord | None:
    """Is a retired SKU still in use? Open invoices in the hub and active
    subscriptions in billing that bill one of its released prices."""
    version = ProductVersion.objects.select_related("product").filter(pk=version_id).first()
    if version is None:
        return None
    product = version.product
    released = list(PriceVersion.objects.filter(price__product=product).exclude(released_at=None))
    xrefs = list(CrossReference.objects.filter(object_type="price_version",
                                               canonical_id__in=[v.pk for v in released]))
    billing_ids = [x.external_id for x in xrefs]
    refs = billing_ids + [p.source_id for p in product.prices.all()]
    open_invoices = (InvoiceLine.objects.filter(invoice__status="open", price_ref__in=refs)
                     .values_list("invoice__source_id", flat=True).distinct())
    invoices = sorted(set(open_invoices))
    subscriptions = 0
    for xref in xrefs:
        connection = Connection.objects.filter(name=xref.system, is_active=True).first()
        connector = connector_for(connection) if connection else None
        if isinstance(connector, PriceSink):
            try:
                subscriptions += connector.price_subscriptions(xref.external_id)
            except ConnectorError as exc:
                log.warning("retirement_check_billing_unreachable", error=str(exc))
    if not invoices and not subscriptions:
        return None
    uses = []
    if subscriptions:
        uses.append(f"{subscriptions if subscriptions < 2 else 'at least 2'} active subscription(s)")
    if invoices:
        uses.append(f"{len(invoices)} open invoice(s) ({', '.join(invoices[:5])})")
    return alert_open(category=Category.ALERT, link=admin_link(version), transaction_id=version.transaction_id,
                      recipients=_recipients(_source_config(version)),
                      summary=f"SKU {product.sku} is retired while {' and '.join(uses)} still use it",
                      detail=f"Retired in version {version.number}. Move the customers to another plan before "
                             "approving the retirement, or approve it knowing billing keeps the archived price "
                             "running for existing subscriptions.")


# ---------------------------------------------------------------- drift


def expected_state(role: str, connection: Connection) -> dict[str, TargetProduct]:
    """What ``connection`` should hold: the released product and price versions."""
    from canonical.models import LegalEntity

    expected: dict[str, TargetProduct] = {}
    currencies = set(LegalEntity.objects.values_list("currency", flat=True))
    for version in ProductVersion.objects.filter(status=Status.RELEASED).select_related("product"):
        prices: dict[str, dict[str, Any]] = {}
        for price in PriceVersion.objects.filter(status=Status.RELEASED, price__product=version.product):
            content = price.content
            if not content.get("active", True):
                continue
            if role == Connection.Role.BILLING:
                key = (content.get("lookup_key") or content["source"]["external_id"])[:200]
                prices[key] = {"currency": content["currency"], "unit_amount": content.get("unit_amount"),
                               "interval": content.get("interval"), "version_ref": str(price.pk)}
            elif (content.get("list_price") and content.get("billing_scheme") == "per_unit"
                  and content["currency"] in currencies):
                prices[content["currency"]] = {"currency": content["currency"],
                                               "unit_amount": content.get("unit_amount")}
        expected[version.product.sku] = TargetProduct(
            sku=version.product.sku, external_id="", name=version.content["display_name"],
            active=version.content["active"], prices=prices)
    return expected


def drift_findings(expected: dict[str, TargetProduct], actual: dict[str, TargetProduct]) -> list[str]:
    """Differences, one sentence each (pure). Retired SKUs may be absent or inactive."""
    findings = []
    for sku, want in sorted(expected.items()):
        have = actual.get(sku)
        if have is None:
            if want.active:
                findings.append(f"{sku}: missing")
            continue
        if have.name != want.name:
            findings.append(f"{sku}: name is {have.name!r}, released {want.name!r}")
        if have.active != want.active:
            findings.append(f"{sku}: {'active' if have.active else 'inactive'}, released "
                            f"{'active' if want.active else 'retired'}")
        for key, price in sorted(want.prices.items()):
            got = have.prices.get(key)
            if got is None:
                findings.append(f"{sku}: price {key} missing")
                continue
            for field in ("currency", "unit_amount", "interval"):
                if field in got and got[field] != price.get(field):
                    findings.append(f"{sku}: price {key} {field} is {got[field]!r}, released {price.get(field)!r}")
        for key in sorted(set(have.prices) - set(want.prices)):
            findings.append(f"{sku}: extra price {key}")
    for sku in sorted(set(actual) - set(expected)):
        if actual[sku].active:
            findings.append(f"{sku}: extra (not released by the hub)")
    return findings


def catalog_drift_check() -> dict[str, list[str]]:
    """Compare every ERP and billing connection with the released versions; one drift
    record per finding. Returns the findings by connection."""
    results: dict[str, list[str]] = {}
    for connection in Connection.objects.filter(is_active=True, role__in=[Connection.Role.ERP,
                                                                           Connection.Role.BILLING]):
        connector = connector_for(connection)
        if not isinstance(connector, ProductSink):
            continue
        expected = expected_state(connection.role, connection)
        try:
            actual = connector.catalog_snapshot(sorted(expected))
        except ConnectorError as exc:
            results[connection.name] = [f"could not read the catalog: {exc}"]
            log.warning("catalog_drift_unreadable", connection=connection.name, error=str(exc))
            continue
        findings = drift_findings(expected, actual)
        results[connection.name] = findings
        for finding in findings:
            alert_open(category=Category.DRIFT, link=reverse("admin:canonical_product_changelist")
                       + f"?q={finding.split(':', 1)[0]}",
                       summary=f"{connection.name} out of step: {finding}",
                       detail=f"Nightly comparison of {connection.name} ({connection.role}) with the released "
                              f"catalog on {dt.date.today()}. Fix it in {connection.name}, or re-release the "
                              "version from the hub.")
    log.info("catalog_drift_check", findings={k: len(v) for k, v in results.items()})
    return results
