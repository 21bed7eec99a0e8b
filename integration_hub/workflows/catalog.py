"""Catalog and pricing sync: product platform → versions → approval → release to the
ERP item master and billing → drift check and alerts.

* In: items a scheduled (or webhook-triggered) pull read (``CatalogItemRead``), SKUs
  a full scan no longer found (``CatalogItemGone``), and the platform's
  ``catalog.changed`` webhook (``CatalogChanged``: an early, debounced pull). See
  ``catalog_pull.py``.
* Control: a real change makes a draft version (``canonical.versions``); a person
  with ``canonical.approve_catalog`` approves or rejects it, or an auto-approval rule
  (data: ``CatalogApprovalRule``) does. Nothing unapproved is ever planned for a target.
* Out, planned when a version is approved: ``catalog.product.release`` to every ERP
  and the billing connection (products by SKU), ``catalog.price.release`` to billing
  (a new immutable price per version, the previous one archived, after the product),
  and ``catalog.list_price.release`` to the ERP of the price's currency (list
  prices of per-unit list prices). A version is released once all its deliveries
  are posted.
* Alerts (``catalog_alerts.py``): a large price change, an effective date already
  past, a retired SKU still in use, drift found by the nightly comparison.

Connections: the ERP and billing connections named by the legal entities, else the
only active one of each role (billing is optional).
"""

from __future__ import annotations

from functools import partial

import structlog
from django.db import connection as db
from django.db import transaction
from django.db.models import Q

from canonical.contracts import ProductV1
from canonical.events import CatalogChanged, CatalogItemGone, CatalogItemRead
from canonical.models import (
    CatalogApprovalRule,
    CatalogVersion,
    CrossReference,
    LegalEntity,
    PriceVersion,
    Product,
    ProductVersion,
)
from canonical.selectors import price_contract, product_contract
from canonical.services import xref_bind
from canonical.signals import product_released
from canonical.versions import (
    InvalidVersionTransition,
    catalog_item_ingest,
    version_approve,
    version_mark_released,
    version_reject,
)
from connectors.base import ExternalDocument, ListPriceSink, PriceSink, ProductSink
from connectors.errors import NeedsConfiguration, Permanent
from connectors.models import Connection
from connectors.services import connection_for_role, connection_named
from integration_hub.runtime.dispatch import (
    DeliveryAction,
    Indicator,
    QueueClass,
    TraceSection,
    Workflow,
    register_workflow,
)
from integration_hub.runtime.failures import DATA_OWNER, Failure
from integration_hub.runtime.models import Delivery, DeliveryAttempt, ExceptionRecord, InboundEvent
from integration_hub.runtime.services import audit_record, delivery_plan
from integration_hub.workflows import catalog_alerts
from integration_hub.workflows.catalog_pull import catalog_pull_request

log = structlog.get_logger(__name__)

PRODUCT_RELEASE = "catalog.product.release"
PRICE_RELEASE = "catalog.price.release"
LIST_PRICE_RELEASE = "catalog.list_price.release"
APPROVE_PERMISSION = "canonical.approve_catalog"
Status = CatalogVersion.Status


class CatalogDecisionRefused(PermissionError):
    """A decision the rules do not allow (no permission, or the product is not approved yet)."""


# ---------------------------------------------------------------- inbound


def catalog_item_read(fact: CatalogItemRead, event: InboundEvent) -> None:
    """Draft versions where the item changed; alerts and auto-approval rules on each."""
    intake = catalog_item_ingest(fact.product, list(fact.prices), transaction_id=event.transaction_id,
                                 source_event=event.pk)
    drafts = ([intake.product_version] if intake.product_version else []) + intake.price_versions
    for draft in drafts:
        catalog_alerts.new_version_alerts(draft)
        if isinstance(draft, ProductVersion) and not draft.content["active"] and draft.changes.get("active"):
            catalog_alerts.retirement_check_after_commit(draft)
    for draft in drafts:  # products first: a price is released after its product
        rule = auto_approval_rule(draft)
        if rule is not None:
            version_decide(draft, approve=True, rule=rule.name, reason=f"auto-approved by rule {rule.name}")


def catalog_item_gone(fact: CatalogItemGone, event: InboundEvent) -> None:
    """A SKU the platform no longer lists is retired: a draft version that says so
    (approval still applies before billing and the ERP archive it)."""
    product = Product.objects.filter(sku=fact.sku).first()
    latest = product.versions.exclude(status=Status.REJECTED).order_by("-number").first() if product else None
    if latest is None or not latest.content.get("active", True):
        return
    retired = ProductV1.model_validate({**latest.content, "active": False})
    prices = [
        price_contract(version).model_copy(update={"active": False})
        for version in (p.versions.exclude(status=Status.REJECTED).order_by("-number").first()
                        for p in product.prices.all())
        if version is not None and version.content.get("active", True)
    ]
    catalog_item_read(CatalogItemRead(retired, tuple(prices), sync_run=fact.sync_run), event)


def catalog_changed(fact: CatalogChanged, event: InboundEvent) -> None:
    catalog_pull_request(connection_named(fact.system), trigger="webhook", debounce=True)


# ---------------------------------------------------------------- approval


def auto_approval_rule(version: CatalogVersion) -> CatalogApprovalRule | None:
    """The first active rule that covers the draft; never for a first version."""
    model = "product" if isinstance(version, ProductVersion) else "price"
    owner = {"product_id": version.product_id} if model == "product" else {"price_id": version.price_id}
    released = type(version).objects.filter(status=Status.RELEASED, **owner).order_by("-number").first()
    if released is None:
        return None
    changed = set(version.changes)
    for rule in CatalogApprovalRule.objects.filter(is_active=True, applies_to=model).order_by("name"):
        if rule.kind == CatalogApprovalRule.Kind.FIELDS_ONLY and changed and changed <= set(rule.fields):
            return rule
        if rule.kind == CatalogApprovalRule.Kind.PRICE_CHANGE_BELOW and model == "price" and changed == {"unit_amount"}:
            percent = catalog_alerts.price_change_percent(released, version)
            if percent is not None and rule.percent is not None and abs(percent) < rule.percent:
                return rule
    return None


def _check_may_approve(user) -> None:
    if user is None or not user.has_perm(APPROVE_PERMISSION):
        raise CatalogDecisionRefused(f"{user} lacks the catalog-approver permission ({APPROVE_PERMISSION})")


def _product_ready(version: PriceVersion) -> None:
    product_versions = ProductVersion.objects.filter(product=version.price.product)
    if not product_versions.filter(status__in=[Status.APPROVED, Status.RELEASED]).exists():
        raise CatalogDecisionRefused(f"approve {version.price.product.sku}'s product version before its prices")


@transaction.atomic
def version_decide(version: CatalogVersion, *, approve: bool, user=None, rule: str = "", reason: str = "") -> CatalogVersion:
    """A person's (or a rule's) decision on a draft, audited; approval plans the release."""
    if not rule:
        _check_may_approve(user)
    if approve:
        if isinstance(version, PriceVersion):
            _product_ready(version)
        decided = version_approve(version, user=user, rule=rule, reason=reason)
        release_plan(decided)
    else:
        decided = version_reject(version, user=user, reason=reason)
    audit_record(actor=user, action="catalog.approve" if approve else "catalog.reject", obj=decided,
                 reason=reason or (f"rule {rule}" if rule else ""),
                 changes={"version": decided.number, "by_rule": rule, "diff": decided.changes})
    log.info("catalog_version_decided", version=str(decided), approve=approve, rule=rule)
    return decided


def versions_approve(versions: list[CatalogVersion], *, user) -> tuple[int, list[str]]:
    """Bulk approval (products before prices); returns (approved, reasons for the skipped)."""
    _check_may_approve(user)
    done, skipped = 0, []
    for version in sorted(versions, key=lambda v: (isinstance(v, PriceVersion), v.pk)):
        try:
            version_decide(version, approve=True, user=user, reason="bulk approval")
            done += 1
        except (InvalidVersionTransition, CatalogDecisionRefused) as exc:
            skipped.append(str(exc))
    return done, skipped


# ---------------------------------------------------------------- release planning


def _targets(role: str) -> list[Connection]:
    """The connections of ``role`` the legal entities name, else the only active one."""
    names = {getattr(e, f"{role}_connection") for e in LegalEntity.objects.all()} - {""}
    if names:
        return [connection_for_role(role, name=name) for name in sorted(names)]
    try:
        return [connection_for_role(role)]
    except NeedsConfiguration:
        if role == Connection.Role.BILLING:
            return []  # billing is optional
        raise


def _entity_for(currency: str) -> LegalEntity | None:
    return LegalEntity.objects.filter(currency=currency).first()


def _product_delivery(product_id: int, connection: Connection) -> Delivery | None:
    """The latest product release to ``connection`` (a price waits for it), read under
    a FOR KEY SHARE lock. Its posting (``delivery_record_success``, FOR UPDATE) waits
    for this transaction before it wakes its dependents, so either the posting sees
    this price's row or this read sees the product posted. KEY SHARE does not stop a
    worker claiming the product delivery (the claim is FOR NO KEY UPDATE SKIP LOCKED),
    so the product is never skipped while a price is being planned after it."""
    version_ids = ProductVersion.objects.filter(product_id=product_id).values_list("pk", flat=True)
    found = (Delivery.objects.filter(action=PRODUCT_RELEASE, connection=connection, object_type="product_version",
                                     object_id__in=list(version_ids)).order_by("-created_at")
             .values_list("pk", flat=True).first())
    if found is None:
        return None
    if db.vendor == "postgresql":  # SQLite serialises writers itself
        with db.cursor() as cursor:
            cursor.execute(f"SELECT id FROM {Delivery._meta.db_table} WHERE id = %s FOR KEY SHARE", [found])
    return Delivery.objects.get(pk=found)


def release_plan(version: CatalogVersion) -> list[Delivery]:
    """The outbox rows of an approved version. Idempotent (keys are per version)."""
    if version.status not in (Status.APPROVED, Status.RELEASED):
        raise InvalidVersionTransition(version, "planned for release")
    planned: list[Delivery] = []
    txn = version.transaction_id
    if isinstance(version, ProductVersion):
        for connection in _targets(Connection.Role.ERP) + _targets(Connection.Role.BILLING):
            planned.append(delivery_plan(transaction_id=txn, connection=connection, action=PRODUCT_RELEASE,
                                         object_type="product_version", object_id=version.pk))
    else:
        price = price_contract(version)
        product_id = version.price.product_id
        for connection in _targets(Connection.Role.BILLING):
            planned.append(delivery_plan(transaction_id=txn, connection=connection, action=PRICE_RELEASE,
                                         object_type="price_version", object_id=version.pk,
                                         after=_product_delivery(product_id, connection)))
        entity = _entity_for(price.currency)
        if price.list_price and price.billing_scheme == "per_unit" and price.active and entity is not None:
            erp = connection_for_role(Connection.Role.ERP, name=entity.erp_connection)
            planned.append(delivery_plan(transaction_id=txn, connection=erp, action=LIST_PRICE_RELEASE,
                                         object_type="price_version", object_id=version.pk,
                                         after=_product_delivery(product_id, erp)))
    if not planned:
        transaction.on_commit(partial(_release_if_complete, type(version), version.pk))
    return planned


# ---------------------------------------------------------------- delivery


def _approved(model: type[CatalogVersion], delivery: Delivery) -> CatalogVersion:
    version = model.objects.get(pk=delivery.object_id)
    if version.status not in (Status.APPROVED, Status.RELEASED):
        # Never reached without approval; a guard against a hand-made outbox row.
        raise Permanent(f"{version} is {version.status}: only approved versions are released")
    return version


def _product_send(connector: ProductSink, delivery: Delivery) -> ExternalDocument:
    """Safe to repeat: the target finds the product by its SKU before creating it (the
    ERP by code, Stripe by the SKU as product id under the Idempotency-Key)."""
    version = _approved(ProductVersion, delivery)
    return connector.upsert_product(product_contract(version), idempotency_key=delivery.idempotency_key)


def _product_bind(delivery: Delivery, document: ExternalDocument) -> None:
    version = ProductVersion.objects.get(pk=delivery.object_id)
    xref_bind(system=delivery.connection.name, object_type="product", canonical_id=version.product_id,
              external_id=document.external_id, number=document.number or "")
    # Whatever waits for this SKU there (an invoice line on it) may go on now.
    transaction.on_commit(partial(product_released.send, sender=Product, product_id=version.product_id,
                                  system=delivery.connection.name))
    _release_if_complete(ProductVersion, version.pk)


def billing_price_of(version: PriceVersion, system: str) -> str | None:
    return (CrossReference.objects.filter(system=system, object_type="price_version", canonical_id=version.pk)
            .values_list("external_id", flat=True).first())


def _replaced(version: PriceVersion, system: str) -> str | None:
    """The billing price of the version released before this one."""
    previous = (PriceVersion.objects.filter(price_id=version.price_id, number__lt=version.number)
                .filter(status__in=[Status.RELEASED, Status.SUPERSEDED]).exclude(released_at=None)
                .order_by("-number").first())
    return billing_price_of(previous, system) if previous else None


def _price_send(connector: PriceSink, delivery: Delivery) -> ExternalDocument:
    """Safe to repeat: ``create_price`` first looks for the price made for this version
    (its metadata), then finishes the steps (default price, archive the old one)."""
    version = _approved(PriceVersion, delivery)
    return connector.create_price(price_contract(version), version_ref=str(version.pk),
                                  replaces=_replaced(version, delivery.connection.name),
                                  idempotency_key=delivery.idempotency_key)


def _price_bind(delivery: Delivery, document: ExternalDocument) -> None:
    xref_bind(system=delivery.connection.name, object_type="price_version", canonical_id=delivery.object_id,
              external_id=document.external_id)
    _release_if_complete(PriceVersion, delivery.object_id)


def _list_price_send(connector: ListPriceSink, delivery: Delivery) -> ExternalDocument:
    """Safe to repeat: it sets the company's list price to a value."""
    version = _approved(PriceVersion, delivery)
    price = price_contract(version)
    entity = _entity_for(price.currency)
    if entity is None:
        raise NeedsConfiguration(f"no legal entity books {price.currency}; cannot set a list price")
    return connector.set_list_price(price, legal_entity=entity.code, idempotency_key=delivery.idempotency_key)


def _list_price_bind(delivery: Delivery, document: ExternalDocument) -> None:
    _release_if_complete(PriceVersion, delivery.object_id)


def _release_if_complete(model: type[CatalogVersion], version_id: int) -> None:
    """Mark the version released once all its deliveries are posted. The version row
    is locked first: when its last two deliveries post at the same moment, the second
    waits for the first to commit and then sees both posted (without the lock each
    would see the other still in flight, and the version would never be released)."""
    object_type = "product_version" if model is ProductVersion else "price_version"
    with transaction.atomic():
        version = model.objects.select_for_update().get(pk=version_id)
        outstanding = Delivery.objects.filter(object_type=object_type, object_id=version_id).exclude(
            status=Delivery.Status.POSTED)
        if outstanding.exists():
            return
        if version.status == Status.APPROVED:
            version_mark_released(version)
            log.info("catalog_version_released", version=str(version))


# ---------------------------------------------------------------- trace


def _version_rows(model: type[CatalogVersion], kind: str):
    def rows(transaction_id, delivered) -> list[dict]:
        found = model.objects.filter(Q(transaction_id=transaction_id) | Q(pk__in=delivered.get(kind, ())))
        return [{"id": v.pk, "version": v.number, "status": v.status, "owner": str(v.product if kind ==
                 "product_version" else v.price), "changes": v.changes} for v in found]
    return rows


WORKFLOW = register_workflow(Workflow(
    name="catalog",
    title="Catalog and pricing sync",
    pattern="scheduled pull with a watermark and a full scan, change alerts; release after approval",
    data_owner=ExceptionRecord.Team.PRODUCT_OPERATIONS,
    queue=QueueClass.CATALOG,
    subjects=("product", "catalog"),
    facts={CatalogItemRead: catalog_item_read, CatalogItemGone: catalog_item_gone, CatalogChanged: catalog_changed},
    actions=(
        DeliveryAction(name=PRODUCT_RELEASE, capability=ProductSink, send=_product_send, bind=_product_bind),
        DeliveryAction(name=PRICE_RELEASE, capability=PriceSink, send=_price_send, bind=_price_bind),
        DeliveryAction(name=LIST_PRICE_RELEASE, capability=ListPriceSink, send=_list_price_send,
                       bind=_list_price_bind),
    ),
    indicators=(
        Indicator("prices_awaiting_approval", "Price versions awaiting approval", "canonical.PriceVersion",
                  {"status": "draft"}, team=ExceptionRecord.Team.PRODUCT_OPERATIONS,
                  help="pulled from the product platform; nothing reaches the ERP or billing before approval"),
        Indicator("products_awaiting_approval", "Product versions awaiting approval", "canonical.ProductVersion",
                  {"status": "draft"}, team=ExceptionRecord.Team.PRODUCT_OPERATIONS),
        Indicator("catalog_releases_pending", "Catalog releases not yet in the ERP or billing", "runtime.Delivery",
                  {"action__in": f"{PRODUCT_RELEASE},{PRICE_RELEASE},{LIST_PRICE_RELEASE}",
                   "status__in": "pending,held,in_flight"}, team=ExceptionRecord.Team.PRODUCT_OPERATIONS),
    ),
    trace=(TraceSection("product_versions", "product_version", _version_rows(ProductVersion, "product_version")),
           TraceSection("price_versions", "price_version", _version_rows(PriceVersion, "price_version"))),
    failures={
        CatalogDecisionRefused: Failure(DeliveryAttempt.Outcome.PERMANENT, "neutral", retry=False, team=DATA_OWNER,
                                        category=ExceptionRecord.Category.REJECTED),
    },
))
