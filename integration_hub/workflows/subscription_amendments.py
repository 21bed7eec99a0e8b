"""Subscription amendments as a saga: validate against the catalog → apply in billing
→ post the proration invoice (or credit) to the ERP through the invoice workflow →
report the outcome to the CRM. Compensation per step: docs/quote-to-cash.md.

* In: a won CRM deal that amends a subscription (``AmendmentRequested``: Salesforce
  ``Amends__c`` / ``Amendment_Number__c``, HubSpot ``hub_amends_deal`` /
  ``hub_amendment_sequence``), or billing's own change (``SubscriptionChanged`` from
  ``customer.subscription.*``: a self-service change the CRM must learn).
* Every step is an ``AmendmentStep`` row (state, timestamps, idempotency key). The
  billing, ERP and CRM steps are outbox deliveries (``amendment.apply``,
  ``amendment.post``, ``amendment.report``) sharing the step's key, so they inherit
  retries, attempts, lookups after lost answers, dead letters and replay.
* **Ordered per subscription**: amendment n+1 starts only when 1..n exist and are
  finished (done, rejected or failed). Starting one happens under a row lock on the
  subscription, in the transaction that records an arrival or a finish, so with
  several workers and any arrival order they apply in the CRM's order.
"""

from __future__ import annotations

import datetime as dt

import structlog
from django.db.models import Max, Q
from django.utils import timezone

from canonical.events import AmendmentRequested, SubscriptionChanged
from canonical.models import (
    Amendment,
    AmendmentStep,
    CrossReference,
    Invoice,
    LegalEntity,
    Order,
    PriceVersion,
    Subscription,
)
from canonical.models import SubscriptionItem as Item
from canonical.selectors import customer_source_ref, price_billing_ref, subscription_contract
from connectors.base import (
    ExternalDocument,
    InvoicePoster,
    ReceivedEvent,
    SubscriptionBilling,
    SubscriptionChange,
    SubscriptionReporter,
)
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
from integration_hub.runtime.services import delivery_plan, inbound_accept, inbound_process
from integration_hub.workflows.quote_to_cash import line_price, subscription_record

log = structlog.get_logger(__name__)

APPLY, POST, REPORT = "amendment.apply", "amendment.post", "amendment.report"
Step, State, Status, Kind = AmendmentStep.Name, AmendmentStep.State, Amendment.Status, Amendment.Kind

# How billing prorates each kind of change (Stripe's terms): a change of what is
# sold is invoiced (or credited) at once, so the ERP sees it in the period it happens.
PRORATION = {Kind.UPGRADE: "always_invoice", Kind.DOWNGRADE: "always_invoice", Kind.QUANTITY: "always_invoice",
             Kind.RENEWAL: "none", Kind.CANCEL_AT_PERIOD_END: "none", Kind.CANCEL_NOW: "none"}


class AmendmentUnknownSubscription(MappingError):
    """The amending deal names a deal the hub has no subscription for."""


class AwaitingProrationPosting(Retryable):
    """The proration invoice is not in the invoice workflow yet (its event failed into
    a finance exception, or has not been processed); retried, neutral."""


# ---------------------------------------------------------------- intake


def _key(amendment: Amendment, step: str) -> str:
    return f"amendment:{amendment.pk}:{step}"


def _steps_create(amendment: Amendment) -> None:
    AmendmentStep.objects.bulk_create([AmendmentStep(amendment=amendment, name=name, idempotency_key=_key(amendment, name))
                                       for name in AmendmentStep.ORDER])


def amendment_requested(fact: AmendmentRequested, event: InboundEvent) -> None:
    contract = fact.order
    order = Order.objects.filter(source_system=contract.amends.system, source_id=contract.amends.external_id).first()
    subscription = getattr(order, "subscription", None) if order is not None else None
    if subscription is None:
        raise AmendmentUnknownSubscription(
            f"deal {contract.source.external_id} amends {contract.amends.system} deal {contract.amends.external_id}, "
            "which has no subscription in the hub")
    subscription = Subscription.objects.select_for_update().get(pk=subscription.pk)
    if Amendment.objects.filter(source_system=contract.source.system, source_id=contract.source.external_id).exists():
        return  # the same amending deal again
    sequence = contract.amendment_sequence
    if sequence is None:
        sequence = (subscription.amendments.aggregate(top=Max("sequence"))["top"] or 0) + 1
    if subscription.amendments.filter(sequence=sequence).exists():
        raise MappingError(f"deal {contract.source.external_id}: amendment {sequence} of subscription "
                           f"{subscription.pk} already came from another deal")
    items = [{"source_line_id": line.source_line_id, "sku": line.sku or "", "price_ref": line.price_ref or "",
              "quantity": line.quantity} for line in contract.lines]
    amendment = Amendment.objects.create(
        subscription=subscription, sequence=sequence, source_system=contract.source.system,
        source_id=contract.source.external_id, kind=_cancel_kind(contract.cancel) or Kind.RENEWAL,
        items=items, transaction_id=event.transaction_id,
    )
    _steps_create(amendment)
    log.info("amendment_received", amendment=amendment.pk, subscription=subscription.pk, sequence=sequence)
    amendments_advance(subscription)


def _cancel_kind(cancel: str | None) -> str | None:
    return {"now": Kind.CANCEL_NOW, "period_end": Kind.CANCEL_AT_PERIOD_END}.get(cancel or "")


# ---------------------------------------------------------------- ordering


def amendment_next(subscription: Subscription) -> Amendment | None:
    """The amendment whose turn it is: the lowest-numbered unfinished one, if every
    number before it has arrived and finished. Call under the subscription's lock."""
    finished = set(subscription.amendments.filter(status__in=Amendment.FINISHED, sequence__isnull=False)
                   .values_list("sequence", flat=True))
    pending = subscription.amendments.exclude(status__in=Amendment.FINISHED).filter(sequence__isnull=False) \
        .order_by("sequence").first()
    if pending is None or any(n not in finished for n in range(1, pending.sequence)):
        return None
    return pending


def amendments_advance(subscription: Subscription) -> None:
    """Start the next amendment, and the ones after it that finish at once (rejected)."""
    while (amendment := amendment_next(subscription)) is not None and amendment.status == Status.WAITING:
        amendment_start(amendment, subscription)


def _step(amendment: Amendment, name: str, state: str, detail: str = "", *, delivery: Delivery | None = None) -> None:
    now = timezone.now()
    values: dict = {"state": state}
    if detail:
        values["detail"] = detail[:2000]
    if delivery is not None:
        values["delivery_id"] = delivery.pk
    if state == State.RUNNING:
        values["started_at"] = now
    elif state in (State.DONE, State.FAILED, State.SKIPPED):
        values["finished_at"] = now
    steps = AmendmentStep.objects.filter(amendment=amendment, name=name)
    if state != State.RUNNING:
        steps.filter(started_at__isnull=True).update(started_at=now)
    steps.update(**values)


def _finish(amendment: Amendment, status: str, reason: str = "") -> None:
    amendment.status, amendment.reason, amendment.finished_at = status, reason or amendment.reason, timezone.now()
    amendment.save(update_fields=["status", "reason", "finished_at", "updated_at"])


def amendment_validate(amendment: Amendment, subscription: Subscription) -> tuple[list[tuple[PriceVersion, int]], str]:
    """The items afterwards (released versions, quantities) and the kind of change, or
    MappingError with the reason it is rejected."""
    if subscription.status == Subscription.Status.CANCELED:
        raise MappingError(f"subscription {subscription.billing_id or subscription.pk} is cancelled; "
                           "a cancelled subscription cannot be amended")
    if not subscription.billing_id:
        raise MappingError(f"subscription {subscription.pk} is not in billing yet")
    cancel = amendment.kind if amendment.kind in (Kind.CANCEL_NOW, Kind.CANCEL_AT_PERIOD_END) else None
    current = [(item.price_version, item.quantity) for item in subscription.items.select_related("price_version__price")]
    if cancel:
        return current, cancel
    if not amendment.items:
        raise MappingError("the amending deal has no line items (to cancel, set its cancellation)")
    problems, after = [], []
    for line in amendment.items:
        version, problem = line_price(line_id=line["source_line_id"], sku=line["sku"], price_ref=line["price_ref"],
                                      quantity=line["quantity"], currency=subscription.currency)
        if problem and line["quantity"] <= 0:
            problem = (f"line {line['source_line_id']} ({line['sku'] or line['price_ref']}): quantity "
                       f"{line['quantity']} would take the subscription below one seat")
        if version is not None and price_billing_ref(version, subscription.billing_system) is None:
            problem = f"line {line['source_line_id']}: price {version.price.source_id} is not in billing"
        if problem:
            problems.append(problem)
        else:
            after.append((version, line["quantity"]))
    if problems:
        raise MappingError("; ".join(problems))

    def worth(items) -> int:
        return sum((version.unit_amount or 0) * quantity for version, quantity in items)

    same_prices = sorted(v.pk for v, _ in after) == sorted(v.pk for v, _ in current)
    if same_prices and sorted((v.pk, q) for v, q in after) == sorted((v.pk, q) for v, q in current):
        kind = Kind.RENEWAL
    elif same_prices:
        kind = Kind.QUANTITY
    else:
        kind = Kind.UPGRADE if worth(after) >= worth(current) else Kind.DOWNGRADE
    return after, kind


def amendment_start(amendment: Amendment, subscription: Subscription) -> None:
    """Step 1 (validate, in the database) and, when valid, plan step 2 (billing).
    Compensation: a rejected amendment is reported to the CRM with the reason."""
    _step(amendment, Step.VALIDATE, State.RUNNING)
    try:
        after, kind = amendment_validate(amendment, subscription)
    except MappingError as exc:
        _step(amendment, Step.VALIDATE, State.FAILED, str(exc))
        for name in (Step.APPLY, Step.POST):
            _step(amendment, name, State.SKIPPED, "not applied: validation rejected the amendment")
        _finish(amendment, Status.REJECTED, str(exc))
        _plan_report(amendment, subscription)
        log.info("amendment_rejected", amendment=amendment.pk, reason=str(exc))
        return
    amendment.kind = kind
    amendment.items = [{**line, "price_version": version.pk} for line, (version, _) in zip(
        amendment.items, after, strict=False)] if kind not in (Kind.CANCEL_NOW, Kind.CANCEL_AT_PERIOD_END) \
        else amendment.items
    amendment.proration_behavior = PRORATION[kind]
    amendment.status = Status.APPLYING
    amendment.save(update_fields=["kind", "items", "proration_behavior", "status", "updated_at"])
    _step(amendment, Step.VALIDATE, State.DONE, f"{kind}: " + ", ".join(
        f"{version.price.source_id} × {quantity}" for version, quantity in after))
    billing = connection_named(subscription.billing_system)
    apply = delivery_plan(transaction_id=amendment.transaction_id, connection=billing, action=APPLY,
                          object_type="amendment", object_id=amendment.pk)
    _step(amendment, Step.APPLY, State.PENDING, delivery=apply)


def _plan_report(amendment: Amendment, subscription: Subscription, *, after: Delivery | None = None) -> Delivery:
    crm = connection_named(amendment.source_system if amendment.sequence is not None else subscription.crm_system)
    report = delivery_plan(transaction_id=amendment.transaction_id, connection=crm, action=REPORT,
                           object_type="amendment", object_id=amendment.pk, after=after)
    _step(amendment, Step.REPORT, State.PENDING, delivery=report)
    return report


# ---------------------------------------------------------------- step 2: billing


def _amendment(delivery: Delivery) -> tuple[Amendment, Subscription]:
    amendment = Amendment.objects.select_related("subscription__customer").get(pk=delivery.object_id)
    return amendment, amendment.subscription


def _change(amendment: Amendment) -> SubscriptionChange:
    subscription = amendment.subscription
    cancel = {Kind.CANCEL_NOW: "now", Kind.CANCEL_AT_PERIOD_END: "period_end"}.get(amendment.kind)
    items = () if cancel else tuple(
        (price_billing_ref(PriceVersion.objects.get(pk=line["price_version"]), subscription.billing_system),
         line["quantity"]) for line in amendment.items)
    # Prorated as of when the amendment arrived, so a retry bills the same amount.
    return SubscriptionChange(items=items, cancel=cancel, proration_behavior=amendment.proration_behavior,
                              amendment=amendment.pk, proration_date=int(amendment.created_at.timestamp()))


def _apply_send(connector: SubscriptionBilling, delivery: Delivery) -> ExternalDocument:
    """Billing's idempotency key makes a resend safe; after a lost answer the lookup
    finds the change by the amendment id billing keeps in the subscription's metadata.
    A refusal (Permanent) is an answer too: the bind compensates."""
    amendment, subscription = _amendment(delivery)
    if amendment.status != Status.APPLYING:
        raise Permanent(f"amendment {amendment.pk} is {amendment.status}; it is not applied again")
    _step(amendment, Step.APPLY, State.RUNNING)
    try:
        return connector.amend_subscription(subscription.billing_id, _change(amendment),
                                            idempotency_key=delivery.idempotency_key)
    except (NeedsConfiguration, MappingError):
        raise
    except Permanent as exc:
        return ExternalDocument(external_id="", state="refused", related={"reason": str(exc)[:500]})


def _apply_lookup(connector: SubscriptionBilling, delivery: Delivery) -> ExternalDocument | None:
    amendment, subscription = _amendment(delivery)
    customer = subscription.customer
    found = connector.find_subscription(subscription_contract(subscription),
                                        customer=customer_source_ref(customer, delivery.connection.name) or "")
    if found is None:
        return None
    applied = found.related.get("hub_amendment") == str(amendment.pk) or (
        amendment.kind == Kind.CANCEL_NOW and found.state == "canceled")
    if not applied:
        return None
    invoice = found.related.get("latest_invoice", "") if amendment.proration_behavior == "always_invoice" else ""
    return ExternalDocument(external_id=found.external_id, state=found.state,
                            related={**found.related, "invoice": invoice})


def _apply_bind(delivery: Delivery, document: ExternalDocument) -> None:
    amendment, _ = _amendment(delivery)
    subscription = Subscription.objects.select_for_update().get(pk=amendment.subscription_id)
    amendment.refresh_from_db()
    if amendment.status != Status.APPLYING:
        return
    if document.state == "refused":
        # Compensation: nothing changed in billing, so nothing posts; the CRM is told.
        reason = document.related.get("reason", "billing refused the change")
        _step(amendment, Step.APPLY, State.FAILED, reason)
        _step(amendment, Step.POST, State.SKIPPED, "nothing to post: billing refused the change")
        _finish(amendment, Status.FAILED, reason)
        _plan_report(amendment, subscription)
        amendments_advance(subscription)
        log.info("amendment_refused_by_billing", amendment=amendment.pk, reason=reason)
        return
    _items_record(subscription, amendment)
    subscription_record(subscription, document)
    if amendment.kind == Kind.CANCEL_AT_PERIOD_END:
        subscription.cancel_at_period_end = True
    if amendment.kind == Kind.CANCEL_NOW:
        subscription.canceled_at = timezone.now()
    subscription.version += 1
    subscription.save(update_fields=["cancel_at_period_end", "canceled_at", "version", "updated_at"])
    amendment.invoice_ref = document.related.get("invoice", "")
    amendment.status = Status.POSTING
    amendment.save(update_fields=["invoice_ref", "status", "updated_at"])
    _step(amendment, Step.APPLY, State.DONE, f"billing {document.external_id} is {document.state}"
          + (f"; proration invoice {amendment.invoice_ref}" if amendment.invoice_ref else "; no proration invoice"))
    erp = _erp_for(subscription)
    post = delivery_plan(transaction_id=amendment.transaction_id, connection=erp, action=POST,
                         object_type="amendment", object_id=amendment.pk)
    _step(amendment, Step.POST, State.PENDING, delivery=post)


def _items_record(subscription: Subscription, amendment: Amendment) -> None:
    if amendment.kind in (Kind.CANCEL_NOW, Kind.CANCEL_AT_PERIOD_END):
        return
    subscription.items.all().delete()
    Item.objects.bulk_create([Item(subscription=subscription, price_version_id=line["price_version"],
                                   quantity=line["quantity"]) for line in amendment.items])


def _erp_for(subscription: Subscription) -> Connection:
    entity = LegalEntity.objects.filter(currency=subscription.currency).first()
    return connection_for_role(Connection.Role.ERP, name=entity.erp_connection if entity else "")


# ---------------------------------------------------------------- step 3: ERP


def _proration_invoice(amendment: Amendment) -> Invoice | None:
    return Invoice.objects.filter(source_system=amendment.subscription.billing_system,
                                  source_id=amendment.invoice_ref).first()


def _post_send(connector: InvoicePoster, delivery: Delivery) -> ExternalDocument:
    """Hands billing's proration invoice to the invoice workflow (an inbox event keyed
    by the amendment, so it is accepted once; the workflow posts each invoice once,
    however often billing's own webhook brings it too). Safe to repeat."""
    amendment, subscription = _amendment(delivery)
    if not amendment.invoice_ref:
        return ExternalDocument(external_id="", state="nothing_to_post")
    if (invoice := _proration_invoice(amendment)) is None:
        billing = connection_named(subscription.billing_system)
        source = connector_for(billing)
        if not isinstance(source, SubscriptionBilling):
            raise NeedsConfiguration(f"connection {billing.name} cannot read invoices")
        document = source.fetch_invoice(amendment.invoice_ref)
        if document is None:
            raise Permanent(f"billing {billing.name} has no invoice {amendment.invoice_ref}")
        event, _ = inbound_accept(source=billing.name, event=ReceivedEvent(
            external_id=f"hub:amendment:{amendment.pk}:{amendment.invoice_ref}", type="invoice.finalized",
            subject=f"invoice:{amendment.invoice_ref}",
            payload={"type": "invoice.finalized", "data": {"object": document}}))
        inbound_process(event.pk)
        invoice = _proration_invoice(amendment)
        if invoice is None:
            raise AwaitingProrationPosting(f"proration invoice {amendment.invoice_ref} was not accepted by the "
                                           "invoice workflow (see its finance exception)")
    post = Delivery.objects.filter(action="invoice.post", object_type="invoice", object_id=invoice.pk).first()
    if post is None:
        raise AwaitingProrationPosting(f"invoice {invoice.pk} has no ERP posting planned yet")
    return ExternalDocument(external_id=str(invoice.pk), state="handed_over", related={"delivery": str(post.pk)})


def _post_bind(delivery: Delivery, document: ExternalDocument) -> None:
    amendment, _ = _amendment(delivery)
    subscription = Subscription.objects.select_for_update().get(pk=amendment.subscription_id)
    if document.state == "nothing_to_post":
        _step(amendment, Step.POST, State.DONE, "billing made no proration invoice: nothing to post")
        amendment.status = Status.REPORTING
        amendment.save(update_fields=["status", "updated_at"])
        _plan_report(amendment, subscription)
        return
    invoice_post = Delivery.objects.get(pk=int(document.related["delivery"]))
    _step(amendment, Step.POST, State.RUNNING,
          f"proration invoice {amendment.invoice_ref} is posted by the invoice workflow (delivery {invoice_post.pk})")
    # The report waits for the invoice's ERP posting: a posting that fails is a
    # finance exception; once replayed and posted, the report goes.
    _plan_report(amendment, subscription, after=invoice_post)


# ---------------------------------------------------------------- step 4: CRM


def _report_send(connector: SubscriptionReporter, delivery: Delivery) -> ExternalDocument:
    """Safe to repeat: it sets two fields to values."""
    amendment, subscription = _amendment(delivery)
    if amendment.sequence is None:  # billing's own change: the CRM learns the subscription's state
        return connector.report_subscription(subscription.crm_id, subscription_id=subscription.billing_id,
                                             status=subscription.status, idempotency_key=delivery.idempotency_key)
    if amendment.status in (Status.REJECTED, Status.FAILED):
        outcome, detail = amendment.status, amendment.reason
    else:
        outcome = "applied"
        invoice = _proration_invoice(amendment) if amendment.invoice_ref else None
        erp = invoice_post_external(invoice)
        detail = f"{amendment.kind}; " + (f"proration invoice {amendment.invoice_ref} posted to the ERP as {erp}"
                                          if invoice else "no proration invoice")
    return connector.report_amendment(amendment.source_id, outcome=outcome, detail=detail,
                                      idempotency_key=delivery.idempotency_key)


def invoice_post_external(invoice: Invoice | None) -> str:
    if invoice is None:
        return ""
    post = Delivery.objects.filter(action="invoice.post", object_type="invoice", object_id=invoice.pk).first()
    return (post.external_number or post.external_id) if post else ""


def _report_bind(delivery: Delivery, document: ExternalDocument) -> None:
    amendment, _ = _amendment(delivery)
    subscription = Subscription.objects.select_for_update().get(pk=amendment.subscription_id)
    amendment.refresh_from_db()
    _step(amendment, Step.REPORT, State.DONE, f"{delivery.connection.name} deal {document.external_id} updated")
    if amendment.status in (Status.POSTING, Status.REPORTING):
        if amendment.invoice_ref:
            _step(amendment, Step.POST, State.DONE,
                  f"proration invoice {amendment.invoice_ref} posted as {invoice_post_external(_proration_invoice(amendment))}")
        _finish(amendment, Status.DONE)
        log.info("amendment_done", amendment=amendment.pk, subscription=subscription.pk)
        amendments_advance(subscription)


# ---------------------------------------------------------------- billing's own changes


def subscription_changed(fact: SubscriptionChanged, event: InboundEvent) -> None:
    """Billing's view of a subscription. The hub's own changes (its metadata names the
    subscription, and the amendment when there is one) only refresh the status and
    period; a change nobody in the hub asked for (self-service) is recorded as an
    amendment that billing already applied, and reported to the CRM."""
    subscription = Subscription.objects.filter(billing_system=fact.billing.system,
                                               billing_id=fact.billing.external_id).first()
    if subscription is None and fact.hub_subscription is not None:
        subscription = Subscription.objects.filter(pk=fact.hub_subscription).first()
    if subscription is None:
        raise MappingError(f"billing subscription {fact.billing.external_id} is not one the hub knows "
                           "(it was not sold through a CRM deal the hub received)")
    subscription = Subscription.objects.select_for_update().get(pk=subscription.pk)
    if not subscription.billing_id:
        return  # the create's answer is recorded by its delivery; this is its echo
    last_apply = AmendmentStep.objects.filter(amendment__subscription=subscription, name=Step.APPLY,
                                              state=State.DONE).aggregate(at=Max("started_at"))["at"]
    if last_apply is not None and fact.event_created and fact.event_created < int(last_apply.timestamp()):
        return  # from before the hub's last change in billing (a late event): billing has moved on
    if fact.event_created and fact.event_created < subscription.billing_event_at:
        return  # older than the state the hub holds: webhooks arrive in any order
    if subscription.status in Subscription.ENDED and fact.status not in Subscription.ENDED:
        return  # an update sent before the end (its second may equal the deletion's): it has ended
    subscription.billing_event_at = max(subscription.billing_event_at, fact.event_created or 0)
    subscription.status = fact.status or subscription.status
    subscription.cancel_at_period_end = fact.cancel_at_period_end
    for key in ("current_period_start", "current_period_end"):
        if (value := getattr(fact, key)) is not None:
            setattr(subscription, key, dt.datetime.fromtimestamp(value, tz=dt.UTC))
    if fact.canceled_at:
        subscription.canceled_at = dt.datetime.fromtimestamp(fact.canceled_at, tz=dt.UTC)
    subscription.save()
    if _items_match(subscription, fact):
        return
    if fact.amendment is not None and subscription.amendments.filter(pk=fact.amendment).exclude(
            status__in=Amendment.FINISHED).exists():
        return  # the hub's amendment in flight: its delivery records the answer
    amendment = Amendment.objects.create(
        subscription=subscription, sequence=None, source_system=fact.billing.system,
        source_id=f"{fact.billing.external_id}@{event.external_id}", kind=Kind.BILLING_CHANGE,
        items=[{"billing_price": item.billing_price, "quantity": item.quantity} for item in fact.items],
        status=Status.REPORTING, transaction_id=event.transaction_id,
    )
    _steps_create(amendment)
    for name in (Step.VALIDATE, Step.APPLY, Step.POST):
        _step(amendment, name, State.SKIPPED, "changed in billing (self-service); its invoices post as usual")
    _billing_items_record(subscription, fact)
    _plan_report(amendment, subscription)


def _items_match(subscription: Subscription, fact: SubscriptionChanged) -> bool:
    ours = sorted((price_billing_ref(item.price_version, subscription.billing_system) or "", item.quantity)
                  for item in subscription.items.select_related("price_version"))
    return ours == sorted((item.billing_price, item.quantity) for item in fact.items)


def _billing_items_record(subscription: Subscription, fact: SubscriptionChanged) -> None:
    versions = dict(CrossReference.objects.filter(
        system=subscription.billing_system, object_type="price_version",
        external_id__in=[item.billing_price for item in fact.items]).values_list("external_id", "canonical_id"))
    if any(item.billing_price not in versions for item in fact.items):
        raise MappingError(f"billing subscription {fact.billing.external_id} uses a price the catalog did not release")
    subscription.items.all().delete()
    Item.objects.bulk_create([Item(subscription=subscription, price_version_id=versions[item.billing_price],
                                   quantity=item.quantity, billing_item_id=item.billing_item) for item in fact.items])


# ---------------------------------------------------------------- trace, indicators


def _amendment_rows(transaction_id, delivered) -> list[dict]:
    found = Amendment.objects.filter(Q(transaction_id=transaction_id) | Q(pk__in=delivered.get("amendment", ())))
    return [{"id": a.pk, "subscription": a.subscription_id, "sequence": a.sequence, "kind": a.kind,
             "status": a.status, "reason": a.reason, "invoice": a.invoice_ref,
             "steps": [{"name": s.name, "state": s.state, "idempotency_key": s.idempotency_key,
                        "started_at": s.started_at, "finished_at": s.finished_at, "detail": s.detail}
                       for s in a.steps.all()]}
            for a in found.prefetch_related("steps")]


SALES = ExceptionRecord.Team.SALES_OPERATIONS

INDICATORS = (
    Indicator("amendments_in_progress", "Amendments in progress", "canonical.Amendment",
              {"status__in": "applying,posting,reporting"}, team=SALES),
    Indicator("amendments_waiting", "Amendments waiting for an earlier one", "canonical.Amendment",
              {"status": "waiting"}, team=SALES),
)

WORKFLOW = register_workflow(Workflow(
    name="subscription_amendment",
    title="Subscription amendments",
    pattern="orchestrated saga per amendment (validate → billing → ERP → CRM), ordered per subscription",
    data_owner=SALES,
    queue=QueueClass.FINANCE,
    source_role=Connection.Role.CRM,
    target_roles=(Connection.Role.BILLING, Connection.Role.ERP, Connection.Role.CRM),
    indicators=INDICATORS,
    subjects=("subscription",),
    facts={AmendmentRequested: amendment_requested, SubscriptionChanged: subscription_changed},
    actions=(
        DeliveryAction(name=APPLY, capability=SubscriptionBilling, send=_apply_send, bind=_apply_bind,
                       lookup=_apply_lookup),
        DeliveryAction(name=POST, capability=InvoicePoster, send=_post_send, bind=_post_bind),
        DeliveryAction(name=REPORT, capability=SubscriptionReporter, send=_report_send, bind=_report_bind),
    ),
    trace=(TraceSection("amendments", "amendment", _amendment_rows),),
    failures={
        AwaitingProrationPosting: Failure(DeliveryAttempt.Outcome.RETRYABLE, "neutral", True, DATA_OWNER,
                                          ExceptionRecord.Category.RETRIES_EXHAUSTED),
    },
))
