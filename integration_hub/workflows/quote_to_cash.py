"""Quote to cash: a won CRM deal → one canonical order → a subscription in billing →
its id and status written back to the CRM. Its invoices flow through the invoice
posting workflow like any other billing invoice.

* In: a CRM notice about a deal (``OrderReferenced``: a Salesforce Opportunity change
  event through the signed relay, a HubSpot deal webhook). The resolver reads the deal
  and its line items through the CRM's ``OrderSource`` before the event's transaction
  opens; only a won deal goes on (``OrderWon``; a won deal that amends a subscription
  is an ``AmendmentRequested``, see ``subscription_amendments``).
* Control: every line must name a released catalog price in the order's currency that
  billing holds, with a quantity above zero, and the account must be onboarded. A deal
  that fails is **held**: its inbox event fails into an exception for sales operations
  naming each line (``OrderHeld``), replayed once the CRM or the catalog is fixed.
* Out: ``subscription.create`` to billing (Stripe ``Idempotency-Key``; after a lost
  answer the subscription is looked up by its ``hub_subscription`` metadata), then
  ``subscription.report`` to the CRM (subscription id and status on the deal).
"""

from __future__ import annotations

import datetime as dt

import structlog
from django.db.models import Q

from canonical.contracts import OrderV1, SubscriptionV1
from canonical.events import AmendmentRequested, OrderReferenced, OrderWon
from canonical.models import (
    CrossReference,
    Customer,
    LegalEntity,
    Order,
    OrderLine,
    PriceVersion,
    Subscription,
)
from canonical.models import SubscriptionItem as Item
from canonical.selectors import (
    customer_source_ref,
    price_billing_ref,
    price_released,
    price_released_for_sku,
    subscription_contract,
)
from canonical.services import xref_bind
from connectors.base import ExternalDocument, Ignored, OrderSource, SubscriptionBilling, SubscriptionReporter
from connectors.errors import MappingError, NeedsConfiguration, Permanent, Retryable
from connectors.models import Connection
from connectors.services import connection_for_role, connection_named, connector_for
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
from integration_hub.runtime.services import delivery_plan

log = structlog.get_logger(__name__)

CREATE, REPORT = "subscription.create", "subscription.report"
SALES = ExceptionRecord.Team.SALES_OPERATIONS


class OrderHeld(MappingError):
    """A won deal cannot become an order as it stands (a line without a released price,
    a quantity of zero or below, no lines); fixed in the CRM or the catalog and replayed."""


class CustomerNotOnboarded(Retryable):
    """The deal's account has no canonical customer yet (its onboarding may still be on
    its way); retried, then an exception for sales operations."""


# ---------------------------------------------------------------- inbound


def order_read(fact: OrderReferenced) -> list:
    """The deal as its CRM holds it now (read before the event's transaction opens)."""
    connection = connection_named(fact.source.system)
    connector = connector_for(connection)
    if not isinstance(connector, OrderSource):
        raise NeedsConfiguration(f"connection {connection.name} cannot read deals")
    order = connector.fetch_order(fact.source.external_id)
    if order is None:
        return [Ignored(f"{fact.source.system} deal {fact.source.external_id} no longer exists")]
    if order.status != "won":
        return [Ignored(f"{fact.source.system} deal {fact.source.external_id} is {order.status}, not won")]
    return [AmendmentRequested(order) if order.amends is not None else OrderWon(order)]


def customer_of(order: OrderV1) -> Customer:
    customer_id = CrossReference.objects.filter(
        system=order.customer.system, object_type="customer", external_id=order.customer.external_id,
    ).values_list("canonical_id", flat=True).first()
    customer = Customer.objects.filter(pk=customer_id).first() if customer_id else None
    if customer is not None and customer.merged_into_id:
        customer = customer.merged_into
    if customer is None:
        raise CustomerNotOnboarded(
            f"{order.customer.system} account {order.customer.external_id} of deal {order.source.external_id} "
            "is not onboarded yet")
    return customer


def line_price(*, line_id: str, sku: str | None, price_ref: str | None, quantity: int, currency: str,
               description: str = "") -> tuple[PriceVersion | None, str]:
    """The released price version a deal's line names, or why it names none."""
    label = f"line {line_id} ({sku or price_ref or description or 'no product'})"
    if quantity <= 0:
        return None, f"{label}: quantity {quantity} must be above zero"
    if price_ref:
        version = price_released(price_ref)
        if version is None:
            return None, f"{label}: price {price_ref} has no released catalog version"
    elif sku:
        found = price_released_for_sku(sku, currency)
        if len(found) != 1:
            what = "no released price" if not found else f"{len(found)} released prices (name one)"
            return None, f"{label}: product {sku} has {what} in {currency}"
        version = found[0]
    else:
        return None, f"{label}: names no catalog product or price"
    if version.price.currency != currency:
        return None, f"{label}: price {version.price.source_id} is in {version.price.currency}, the deal in {currency}"
    return version, ""


def lines_priced(order: OrderV1, *, billing: Connection | None) -> list[tuple[object, PriceVersion]]:
    """Each line with its released price version; OrderHeld naming every line that has none."""
    if not order.lines:
        raise OrderHeld(f"deal {order.source.external_id} ({order.display_name}) has no line items")
    priced, problems = [], []
    for line in order.lines:
        version, problem = line_price(line_id=line.source_line_id, sku=line.sku, price_ref=line.price_ref,
                                      quantity=line.quantity, currency=order.currency, description=line.description)
        if version is not None and billing is not None and price_billing_ref(version, billing.name) is None:
            problem = (f"line {line.source_line_id} ({line.sku or ''}): price {version.price.source_id} "
                       f"v{version.number} is not released to {billing.name}")
        if problem:
            problems.append(problem)
        else:
            priced.append((line, version))
    if problems:
        raise OrderHeld(f"deal {order.source.external_id} ({order.display_name}) is held: " + "; ".join(problems))
    return priced


def billing_for(currency: str) -> Connection:
    entity = LegalEntity.objects.filter(currency=currency).first()
    return connection_for_role(Connection.Role.BILLING, name=entity.billing_connection if entity else "")


def order_won(fact: OrderWon, event: InboundEvent) -> None:
    order_accept(fact.order, transaction_id=event.transaction_id)


def order_accept(contract: OrderV1, *, transaction_id) -> Order:
    """One order (and one subscription) per won deal; a deal seen again changes nothing."""
    known = Order.objects.filter(source_system=contract.source.system, source_id=contract.source.external_id).first()
    if known is not None:
        return known
    customer = customer_of(contract)
    billing = billing_for(contract.currency)
    priced = lines_priced(contract, billing=billing)
    start = contract.start_on or contract.closed_on
    if start is None:
        raise OrderHeld(f"deal {contract.source.external_id} has no close date or service start")
    order = Order.objects.create(
        source_system=contract.source.system, source_id=contract.source.external_id, name=contract.display_name,
        customer=customer, customer_ref=contract.customer.external_id, currency=contract.currency,
        closed_on=contract.closed_on or start, start_on=start, trial_end=contract.trial_end,
        term_months=contract.term_months, transaction_id=transaction_id,
    )
    OrderLine.objects.bulk_create([
        OrderLine(order=order, position=n, source_line_id=line.source_line_id, sku=line.sku or "",
                  price_ref=line.price_ref or "", price_version=version, quantity=line.quantity)
        for n, (line, version) in enumerate(priced, start=1)
    ])
    subscription = Subscription.objects.create(
        order=order, customer=customer, currency=contract.currency, start_on=start, trial_end=contract.trial_end,
        term_months=contract.term_months, billing_system=billing.name, crm_system=contract.source.system,
        crm_id=contract.source.external_id, transaction_id=transaction_id,
    )
    Item.objects.bulk_create([Item(subscription=subscription, price_version=version, quantity=line.quantity)
                              for line, version in priced])
    create = delivery_plan(transaction_id=transaction_id, connection=billing, action=CREATE,
                           object_type="subscription", object_id=subscription.pk)
    crm = connection_named(contract.source.system)
    delivery_plan(transaction_id=transaction_id, connection=crm, action=REPORT, object_type="subscription",
                  object_id=subscription.pk, after=create)
    log.info("order_accepted", order=order.pk, subscription=subscription.pk, lines=len(priced))
    return order


# ---------------------------------------------------------------- delivery


def _subscription(delivery: Delivery) -> tuple[Subscription, SubscriptionV1, str]:
    subscription = Subscription.objects.select_related("customer").get(pk=delivery.object_id)
    customer = customer_source_ref(subscription.customer, delivery.connection.name)
    if customer is None:
        raise Retryable(f"customer {subscription.customer_id} is not in {delivery.connection.name} yet")
    return subscription, subscription_contract(subscription), customer


def _create_send(connector: SubscriptionBilling, delivery: Delivery) -> ExternalDocument:
    _, contract, customer = _subscription(delivery)
    return connector.create_subscription(contract, customer=customer, idempotency_key=delivery.idempotency_key)


def _create_lookup(connector: SubscriptionBilling, delivery: Delivery) -> ExternalDocument | None:
    _, contract, customer = _subscription(delivery)
    return connector.find_subscription(contract, customer=customer)


def subscription_record(subscription: Subscription, document: ExternalDocument) -> None:
    """Billing's answer on the canonical subscription: id, status, period, item ids."""
    related = document.related
    subscription.billing_id = document.external_id
    subscription.status = document.state or subscription.status
    for key in ("current_period_start", "current_period_end"):
        if related.get(key):
            setattr(subscription, key, dt.datetime.fromtimestamp(int(related[key]), tz=dt.UTC))
    subscription.save(update_fields=["billing_id", "status", "current_period_start", "current_period_end",
                                     "updated_at"])
    for item in subscription.items.select_related("price_version"):
        billing_price = price_billing_ref(item.price_version, subscription.billing_system)
        if billing_price and related.get(f"item:{billing_price}"):
            item.billing_item_id = related[f"item:{billing_price}"]
            item.save(update_fields=["billing_item_id"])


def _create_bind(delivery: Delivery, document: ExternalDocument) -> None:
    subscription = Subscription.objects.select_for_update().get(pk=delivery.object_id)
    xref_bind(system=delivery.connection.name, object_type="subscription", canonical_id=subscription.pk,
              external_id=document.external_id)
    subscription_record(subscription, document)
    Order.objects.filter(subscription=subscription).update(status=Order.Status.FULFILLED)


def _report_send(connector: SubscriptionReporter, delivery: Delivery) -> ExternalDocument:
    """Safe to repeat: it sets two fields to values."""
    subscription = Subscription.objects.get(pk=delivery.object_id)
    if not subscription.billing_id:
        raise Retryable(f"subscription {subscription.pk} has no billing id yet")
    if not subscription.crm_id:
        raise Permanent(f"subscription {subscription.pk} has no CRM deal to report to")
    return connector.report_subscription(subscription.crm_id, subscription_id=subscription.billing_id,
                                         status=subscription.status, idempotency_key=delivery.idempotency_key)


def _no_binding(delivery: Delivery, document: ExternalDocument) -> None:
    """The CRM's answer carries nothing to record."""


# ---------------------------------------------------------------- trace, indicators


def _order_rows(transaction_id, delivered) -> list[dict]:
    return [{"id": o.pk, "deal": f"{o.source_system}:{o.source_id}", "name": o.name, "status": o.status,
             "customer": o.customer_id, "lines": o.lines.count()}
            for o in Order.objects.filter(transaction_id=transaction_id)]


def _subscription_rows(transaction_id, delivered) -> list[dict]:
    found = Subscription.objects.filter(Q(transaction_id=transaction_id) | Q(pk__in=delivered.get("subscription", ())))
    return [{"id": s.pk, "status": s.status, "billing_id": s.billing_id, "crm_id": s.crm_id,
             "items": [(i.price_version.price.source_id, i.quantity) for i in s.items.select_related(
                 "price_version__price")]} for s in found]


INDICATORS = (
    Indicator("orders_held", "Won deals held (a line without a released price)", "runtime.ExceptionRecord",
              {"transaction__kind": "order", "status__in": "open,acknowledged"}, team=SALES,
              help="fix the deal in the CRM or release the price, then replay"),
    Indicator("subscriptions_pending", "Subscriptions waiting to be created in billing", "runtime.Delivery",
              {"action__in": f"{CREATE},{REPORT}", "status__in": "pending,held,in_flight"}, team=SALES),
)

WORKFLOW = register_workflow(Workflow(
    name="quote_to_cash",
    title="Quote to cash (won deals → subscriptions)",
    pattern="event-driven (CRM deal changes, read back) → billing subscription → write-back to CRM",
    data_owner=SALES,
    queue=QueueClass.CUSTOMER,
    source_role=Connection.Role.CRM,
    target_roles=(Connection.Role.BILLING, Connection.Role.CRM),
    contracts=(OrderV1, SubscriptionV1),
    indicators=INDICATORS,
    subjects=("order",),
    facts={OrderWon: order_won},
    resolvers={OrderReferenced: order_read},
    actions=(
        DeliveryAction(name=CREATE, capability=SubscriptionBilling, send=_create_send, bind=_create_bind,
                       lookup=_create_lookup),
        DeliveryAction(name=REPORT, capability=SubscriptionReporter, send=_report_send, bind=_no_binding),
    ),
    trace=(TraceSection("orders", "order", _order_rows), TraceSection("subscriptions", "subscription",
                                                                      _subscription_rows)),
    failures={
        CustomerNotOnboarded: Failure(DeliveryAttempt.Outcome.RETRYABLE, "neutral", True, DATA_OWNER,
                                      ExceptionRecord.Category.RETRIES_EXHAUSTED),
    },
))
