"""Reconciliation checkpoints: the key is billing customer × metric (what Stripe's meter
event summaries are per), the report is per legal entity × currency × metric, and once
the period's invoices are due the invoice lines billed and their ERP postings are stages
too. Each mismatch names its keys; a re-push or a replay is one action."""
# ruff: noqa: F811 - the Stripe sandbox fixtures are shared with the end-to-end test

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.utils import timezone

from canonical.models import CrossReference, Customer, Invoice, InvoiceLine, Price, PriceVersion, Product
from connectors.models import Connection
from integration_hub.runtime.models import BusinessTransaction, Delivery, ExceptionRecord
from integration_hub.usage import services
from integration_hub.usage.models import UsageMeterEvent
from tests.usage.conftest import csv_file
from tests.usage.test_end_to_end import billing, deliver, stripe_api  # noqa: F401 - fixtures


@pytest.fixture
def month(load, billing, sent_tasks, django_capture_on_commit_callbacks):
    """Loads ``rows`` (subscription, metric, quantity) for this month, closes it and
    delivers the push to the Stripe sandbox; returns the period."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=10)

    def run(*rows):
        load(csv_file(*(f"e{n},{sub},{metric},{quantity},{now.isoformat()}"
                        for n, (sub, metric, quantity) in enumerate(rows))))
        period = now.date().replace(day=1)
        with django_capture_on_commit_callbacks(execute=True):
            services.period_close(period)
        deliver(sent_tasks)
        return period
    return run


def _key(checkpoint, subscription):
    return next(m for m in checkpoint.mismatches if subscription in m["subscriptions"])


def test_two_subscriptions_of_one_customer_balance_against_its_one_summary(
        month, known, billing, stripe_api, sent_tasks, django_capture_on_commit_callbacks):
    known("sub_acme_2", customer=billing["acme"])  # a second subscription of the same Stripe customer
    period = month(("sub_acme", "api_calls", "10"), ("sub_acme_2", "api_calls", "5"), ("sub_globex", "api_calls", "1"))

    checkpoint = services.checkpoint_run(period)
    assert checkpoint.status == "balanced", checkpoint.mismatches
    [line] = checkpoint.lines
    assert (line["keys"], line["aggregated_count"], line["billed_quantity"]) == (2, 3, 16_000_000)

    lost = UsageMeterEvent.objects.get(aggregate__subscription="sub_acme_2")
    stripe_api.meters.meter_event_remove(lost.identifier)
    mismatch = services.checkpoint_run(period)
    [key] = mismatch.mismatches
    assert (key["customer"], key["subscriptions"], key["metric"]) == (billing["acme"], ["sub_acme", "sub_acme_2"],
                                                                      "api_calls")
    assert (key["aggregated"], key["billed"], key["actions"]) == ("15", "10", ["re-push"])
    assert "sub_acme, sub_acme_2 × api_calls" in ExceptionRecord.objects.get(category="reconciliation").detail

    with django_capture_on_commit_callbacks(execute=True):
        repair = services.checkpoint_repair(mismatch)
    assert [e.quantity for p in repair.pushes for e in p.events.all()] == [5_000_000]
    deliver(sent_tasks)
    assert services.checkpoint_run(period).status == "balanced"


def test_the_report_splits_by_legal_entity_and_currency(month, known, legal_entities, stripe_api):
    customer = stripe_api.objects.customer("initech", "eu@example.com")
    stripe_api.customers[customer["id"]] = customer
    known("sub_eu", entity="EU", customer=customer["id"])  # EU bills through the only billing connection
    period = month(("sub_acme", "api_calls", "2"), ("sub_eu", "api_calls", "3"), ("sub_eu", "storage_gb", "1"))
    checkpoint = services.checkpoint_run(period)
    assert checkpoint.status == "balanced", checkpoint.mismatches
    lines = {(line["legal_entity"], line["currency"], line["metric"]): line for line in checkpoint.lines}
    assert set(lines) == {("US", "USD", "api_calls"), ("EU", "EUR", "api_calls"), ("EU", "EUR", "storage_gb")}
    assert [lines[k]["billed_quantity"] for k in sorted(lines)] == [3_000_000, 1_000_000, 2_000_000]
    assert lines[("EU", "EUR", "storage_gb")]["loaded_count"] == 1


# ---------------------------------------------------------------- invoice lines and ERP postings


@pytest.fixture
def invoices(db, legal_entities, memory_erp):
    """Billing's invoices as the hub holds them: a metered catalog price bound to Stripe,
    each invoice's customer bound to its Stripe customer, its ERP post delivery."""
    product = Product.objects.create(sku="API", name="API calls")
    price = Price.objects.create(product=product, currency="USD", source_system="platform", source_id="api-metered")
    version = PriceVersion.objects.create(price=price, number=1, status="released", content_hash="x", content={
        "usage_type": "metered", "meter_event_name": "api_calls", "type": "recurring", "interval": "month"})
    CrossReference.objects.create(system="stripe", object_type="price_version", canonical_id=version.pk,
                                  external_id="price_api_metered")
    erp = Connection.objects.get(name="erp")
    made = {}

    def make(number, customer, lines, *, delivery="posted", period=None, status="open"):
        period = period or timezone.now().date().replace(day=1)
        holder = made.get(customer)
        if holder is None:
            holder = made[customer] = Customer.objects.create(display_name=customer)
            CrossReference.objects.create(system="stripe", object_type="customer", canonical_id=holder.pk,
                                          external_id=customer)
        invoice = Invoice.objects.create(
            source_system="stripe", source_id=f"in_{number}", customer=holder, legal_entity=legal_entities["US"],
            currency="USD", status=status, issued_on=period, subtotal=0, tax=0, total=0)
        for position, (price_ref, quantity) in enumerate(lines, start=1):
            InvoiceLine.objects.create(invoice=invoice, position=position, description=price_ref,
                                       quantity=Decimal(quantity), amount=0, price_ref=price_ref,
                                       period_start=period, period_end=services.month_after(period))
        if delivery:
            Delivery.objects.create(
                transaction=BusinessTransaction.objects.create(subject=f"invoice:{number}", kind="invoice"),
                connection=erp, action="invoice.post", object_type="invoice", object_id=invoice.pk,
                idempotency_key=f"invoice.post:{number}", status=delivery, next_attempt_at=timezone.now())
        return invoice
    return make


def test_invoice_lines_and_erp_postings_balance(month, billing, invoices):
    period = month(("sub_acme", "api_calls", "120.5"), ("sub_globex", "api_calls", "7"))
    # Licensed lines, void invoices and lines of another period are not this period's usage.
    invoices(1, billing["acme"], [("price_api_metered", "120.5"), ("price_seats", "3")])
    invoices(2, billing["globex"], [("price_api_metered", "7")])
    invoices(3, billing["globex"], [("price_api_metered", "7")], status="void", delivery="dead")
    invoices(4, billing["acme"], [("price_api_metered", "99")], period=services.month_after(period))

    checkpoint = services.checkpoint_run(period, invoice_stages=True)
    assert checkpoint.status == "balanced", checkpoint.mismatches
    assert checkpoint.checked == ["loaded", "aggregated", "billed", "invoiced", "posted"]
    [line] = checkpoint.lines
    assert {stage: (line[f"{stage}_count"], line[f"{stage}_quantity"]) for stage in ("invoiced", "posted")} == {
        "invoiced": (2, 127_500_000), "posted": (2, 127_500_000)}


def test_an_invoice_line_that_differs_from_billing_names_its_key(month, billing, invoices):
    period = month(("sub_acme", "api_calls", "120.5"), ("sub_globex", "api_calls", "7"))
    invoices(1, billing["acme"], [("price_api_metered", "100")])
    # globex's invoice has not arrived: billing aggregated usage that no invoice bills
    checkpoint = services.checkpoint_run(period, invoice_stages=True)
    assert checkpoint.status == "mismatch"
    keys = {m["subscription"]: (m["billed"], m["invoiced"], m["differs"], m["actions"]) for m in checkpoint.mismatches}
    assert keys == {"sub_acme": ("120.5", "100", ["invoiced"], ["person"]),
                    "sub_globex": ("7", "0", ["invoiced"], ["person"])}
    assert services.checkpoint_repair(checkpoint).pushes == []  # billing's invoice is not the hub's to fix


def test_an_invoice_not_in_the_erp_is_named_and_replayed(month, billing, invoices, sent_tasks,
                                                         django_capture_on_commit_callbacks):
    period = month(("sub_acme", "api_calls", "120.5"), ("sub_globex", "api_calls", "7"))
    invoices(1, billing["acme"], [("price_api_metered", "120.5")], delivery="dead")
    invoices(2, billing["globex"], [("price_api_metered", "7")], delivery="in_flight")

    checkpoint = services.checkpoint_run(period, invoice_stages=True)
    acme, globex = _key(checkpoint, "sub_acme"), _key(checkpoint, "sub_globex")
    assert (acme["differs"], acme["actions"], acme["posted"]) == (["posted"], ["replay"], "0")
    assert [(i["invoice"], i["status"]) for i in acme["invoices"]] == [("in_1", "dead")]
    assert (globex["actions"], globex["invoices"][0]["status"]) == (["wait"], "in_flight")
    detail = ExceptionRecord.objects.get(category="reconciliation").detail
    assert "not in the ERP: in_1 (dead)" in detail and "in_2 (in_flight)" in detail

    dead = Delivery.objects.get(idempotency_key="invoice.post:1")
    with django_capture_on_commit_callbacks(execute=True):
        repair = services.checkpoint_repair(checkpoint)
    assert (repair.pushes, repair.replayed) == ([], [dead.pk])
    dead.refresh_from_db()
    assert dead.status == "pending"
    Delivery.objects.filter(action="invoice.post").update(status="posted")  # the ERP took both
    assert services.checkpoint_run(period, invoice_stages=True).status == "balanced"


def test_the_invoice_stages_join_the_key_control_once_the_invoices_are_due(settings):
    settings.HUB_USAGE_INVOICE_AFTER_HOURS = 72
    this_month = timezone.now().date().replace(day=1)
    assert not services.invoices_due(this_month)
    assert services.invoices_due(dt.date(2020, 1, 1))


def test_the_api_runs_a_checkpoint_with_the_invoice_stages_and_serves_the_csv(
        api, month, billing, invoices, sent_tasks, django_capture_on_commit_callbacks):
    period = month(("sub_acme", "api_calls", "120.5"), ("sub_globex", "api_calls", "7"))
    invoices(1, billing["acme"], [("price_api_metered", "120.5")], delivery="dead")
    invoices(2, billing["globex"], [("price_api_metered", "7")])
    assert api.post("/api/reconciliations/", {"period": f"{period:%Y-%m}", "invoice_stages": "yes"},
                    format="json").status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/reconciliations/", {"period": f"{period:%Y-%m}", "invoice_stages": True},
                            format="json")
    assert response.status_code == 202  # queued: the usage worker reads billing once per key
    queued = response.json()
    assert queued["status"] == "running" and response["Location"] == f"/api/reconciliations/{queued['id']}/"
    assert (services.CHECKPOINT_TASK, queued["id"], None) in sent_tasks
    services.checkpoint_fill(queued["id"])
    assert services.checkpoint_fill(queued["id"]) is None  # a redelivered task leaves it alone
    report = api.get(response["Location"]).json()
    assert report["id"] == queued["id"]
    assert report["status"] == "mismatch" and report["checked"][-2:] == ["invoiced", "posted"]
    assert report["lines"][0]["posted_quantity"] == "7"

    rows = list(csv.reader(io.StringIO(b"".join(
        api.get(f"/api/reconciliations/{report['id']}/?as=csv").streaming_content).decode())))
    assert rows[0][:5] == ["period", "legal_entity", "currency", "metric", "keys"]
    assert rows[1][:5] == [f"{period:%Y-%m}", "US", "USD", "api_calls", "2"]
    mismatch_header = rows.index([]) + 1
    assert rows[mismatch_header][:5] == ["mismatch: customer", "metric", "legal_entity", "currency", "subscriptions"]
    [row] = rows[mismatch_header + 1:]
    assert row[:5] == [billing["acme"], "api_calls", "US", "USD", "sub_acme"]
    assert row[-3:] == ["posted", "replay", "in_1:dead"]

    with django_capture_on_commit_callbacks(execute=True):
        repaired = api.post(f"/api/reconciliations/{report['id']}/repair/")
    assert repaired.status_code == 202
    assert repaired.json() == {"pushes": [], "events": 0,
                               "replayed": [Delivery.objects.get(idempotency_key="invoice.post:1").pk]}


def test_the_schedule_checks_a_closed_period_again_once_its_invoices_are_due_and_after_a_posting(
        month, billing, invoices, settings):
    period = month(("sub_acme", "api_calls", "120.5"))
    assert services.periods_to_reconcile() == [period]  # closed, pushed, never reconciled
    services.checkpoint_run(period, trigger="schedule")
    assert services.periods_to_reconcile() == []  # balanced; its invoices are not due yet

    settings.HUB_USAGE_INVOICE_AFTER_HOURS = -24 * 40  # as if the invoices were due
    assert services.periods_to_reconcile() == [period]
    invoices(1, billing["acme"], [("price_api_metered", "120.5")], delivery="dead")
    assert services.checkpoint_run(period, trigger="schedule").status == "mismatch"
    assert services.periods_to_reconcile() == []  # nothing changed since
    Delivery.objects.filter(action="invoice.post").update(status="posted", updated_at=timezone.now())
    assert services.periods_to_reconcile() == [period]
    assert services.checkpoint_run(period, trigger="schedule").status == "balanced"


def test_the_admin_shows_the_report_and_repairs_in_one_action(
        admin_client, month, billing, invoices, stripe_api, sent_tasks, django_capture_on_commit_callbacks):
    period = month(("sub_acme", "api_calls", "120.5"), ("sub_globex", "api_calls", "7"))
    invoices(1, billing["acme"], [("price_api_metered", "120.5")])
    invoices(2, billing["globex"], [("price_api_metered", "7")], delivery="dead")
    stripe_api.meters.meter_event_remove(UsageMeterEvent.objects.get(aggregate__subscription="sub_acme").identifier)
    checkpoint = services.checkpoint_run(period, invoice_stages=True)
    assert {m["subscription"]: m["actions"] for m in checkpoint.mismatches} == {
        "sub_acme": ["person", "re-push"],  # billing lacks it; its invoice billed it anyway: both are listed
        "sub_globex": ["replay"]}
    page = admin_client.get(f"/admin/usage/checkpoint/{checkpoint.pk}/change/").content.decode()
    assert "<td>US</td><td>USD</td><td>api_calls</td><td>2</td>" in page
    assert "in_2 (dead)" in page and "re-push" in page

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/usage/checkpoint/", {"action": "repair",
                                                                  "_selected_action": [checkpoint.pk]}, follow=True)
    assert "1 repair push(es) planned, 1 ERP posting(s) replayed" in response.content.decode()
    assert Delivery.objects.get(idempotency_key="invoice.post:2").status == "pending"


def test_a_queued_checkpoint_that_cannot_reach_billing_fails_with_its_reason_and_the_schedule_tries_again(
        month, monkeypatch, django_capture_on_commit_callbacks):
    period = month(("sub_acme", "api_calls", "120.5"))

    class Unreachable:
        def meter_usage(self, **kwargs):
            raise ConnectionError("billing did not answer")

    with django_capture_on_commit_callbacks(execute=True):
        queued = services.checkpoint_request(period)
    with monkeypatch.context() as patch, pytest.raises(ConnectionError):
        patch.setattr(services, "connector_for", lambda connection: Unreachable())
        services.checkpoint_fill(queued.pk)
    queued.refresh_from_db()
    assert queued.status == "failed" and queued.error == "ConnectionError: billing did not answer"
    assert queued.lines == [] and not ExceptionRecord.objects.filter(category="reconciliation").exists()
    assert services.periods_to_reconcile() == [period]  # a failed checkpoint is not a result

    assert services.checkpoint_run(period, trigger="schedule").status == "balanced"
    assert services.periods_to_reconcile() == []
