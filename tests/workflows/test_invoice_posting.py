"""The invoice-posting workflow with the broker recorded and the ERP in memory:
events in any order and any number of times converge to one posting."""

import pytest

from canonical.models import CrossReference, Invoice, Payment
from integration_hub.runtime.models import Delivery, ExceptionRecord, InboundEvent
from tests.helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hub(stripe_connection, legal_entities, memory_erp, sent_tasks):
    return memory_erp


@pytest.fixture
def invoice(sandbox):
    customer = sandbox.customer("Grace Hopper", "grace@example.com", country="US")
    return sandbox.finalize(sandbox.invoice(customer, [("Seats", 3, 2500), ("Support", 1, 1000)], currency="usd"))


def test_a_finalized_invoice_is_posted_once_and_bound(hub, post_webhook, sandbox, invoice, sent_tasks):
    post_webhook(sandbox.event("invoice.finalized", invoice))
    drain(sent_tasks)

    record = Invoice.objects.get(source_id=invoice["id"])
    assert (record.currency, record.subtotal, record.tax, record.total) == ("USD", 8500, 850, 9350)
    assert record.legal_entity.code == "US" and record.lines.count() == 2
    delivery = Delivery.objects.get()
    assert (delivery.action, delivery.status, delivery.external_number) == ("invoice.post", "posted", "INV-1")
    assert delivery.attempt_log.get().outcome == "posted"
    assert CrossReference.objects.get(system="erp", object_type="invoice").canonical_id == record.pk
    assert CrossReference.objects.get(system="erp", object_type="customer").canonical_id == record.customer_id
    assert hub.calls == [("post", invoice["id"])]


def test_the_same_invoice_in_three_events_posts_once(hub, post_webhook, sandbox, invoice, sent_tasks):
    for _ in range(3):
        post_webhook(sandbox.event("invoice.finalized", invoice))  # three distinct event ids
    drain(sent_tasks)

    assert InboundEvent.objects.filter(status="processed").count() == 3
    assert Delivery.objects.count() == 1
    assert hub.calls == [("post", invoice["id"])]


def test_paid_before_finalized_converges_to_posted_and_paid(hub, post_webhook, sandbox, invoice, sent_tasks):
    paid = sandbox.pay(invoice)
    post_webhook(sandbox.event("invoice.paid", paid))
    post_webhook(sandbox.event("invoice.finalized", invoice))
    drain(sent_tasks)

    record = Invoice.objects.get(source_id=invoice["id"])
    assert record.status == "paid" and record.amount_paid == 9350
    assert Payment.objects.get().amount == 9350
    assert sorted(Delivery.objects.values_list("action", "status")) == [
        ("invoice.pay", "posted"), ("invoice.post", "posted")
    ]
    assert hub.calls == [("post", invoice["id"]), ("pay", invoice["id"])]


def test_a_payment_waits_for_its_invoice_to_post(hub, post_webhook, sandbox, invoice, sent_tasks):
    from connectors.errors import Retryable

    hub.failures.append(Retryable("ERP busy"))
    post_webhook(sandbox.event("invoice.paid", sandbox.pay(invoice)))
    drain(sent_tasks)  # the post fails once and is scheduled for later

    post = Delivery.objects.get(action="invoice.post")
    pay = Delivery.objects.get(action="invoice.pay")
    assert (post.status, pay.status) == ("pending", "pending")
    assert hub.calls == [("post", invoice["id"])]

    Delivery.objects.filter(pk=post.pk).update(next_attempt_at=post.created_at)
    sent_tasks.append(("hub.deliver", post.pk, None))
    drain(sent_tasks)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"posted"}
    assert hub.calls[-1] == ("pay", invoice["id"])


def test_a_void_credits_after_the_post(hub, post_webhook, sandbox, invoice, sent_tasks):
    post_webhook(sandbox.event("invoice.finalized", invoice))
    post_webhook(sandbox.event("invoice.voided", sandbox.void(invoice)))
    drain(sent_tasks)

    assert Invoice.objects.get().status == "void"
    assert [call[0] for call in hub.calls] == ["post", "void"]


def test_a_late_open_snapshot_never_reverts_a_paid_invoice(hub, post_webhook, sandbox, invoice, sent_tasks):
    post_webhook(sandbox.event("invoice.paid", sandbox.pay(invoice)))
    drain(sent_tasks)
    post_webhook(sandbox.event("invoice.finalized", invoice))
    drain(sent_tasks)
    assert Invoice.objects.get().status == "paid"


def test_unhandled_event_types_are_recorded_as_ignored(hub, post_webhook, sandbox, invoice, sent_tasks):
    post_webhook(sandbox.event("invoice.sent", invoice))
    drain(sent_tasks)
    event = InboundEvent.objects.get()
    assert event.status == "ignored" and "invoice.sent" in event.note
    assert not Delivery.objects.exists()


def test_a_currency_no_posting_rule_covers_opens_a_finance_exception_and_replays(
    hub, post_webhook, sandbox, sent_tasks, admin_user
):
    import datetime as dt

    from canonical.models import LegalEntity, PostingPolicyVersion, PostingRule
    from canonical.policy_services import policy_version_approve, policy_version_draft
    from integration_hub.runtime.services import exception_replay

    gbp = sandbox.finalize(sandbox.invoice("cus_9", [("Plan", 1, 4000)], currency="gbp"))
    post_webhook(sandbox.event("invoice.finalized", gbp))
    drain(sent_tasks)

    event = InboundEvent.objects.get()
    record = ExceptionRecord.objects.get()
    assert event.status == "failed"
    assert (record.owner_team, record.category, record.status) == ("finance", "policy", "open")
    assert "GBP" in record.summary and not Invoice.objects.exists()

    uk = LegalEntity.objects.create(code="UK", name="Acme UK Ltd", currency="GBP", country="GB")
    draft = policy_version_draft(base=PostingPolicyVersion.objects.get(), note="UK entity")
    PostingRule.objects.create(version=draft, priority=5, name="GBP → UK", currency="GBP", legal_entity=uk,
                               revenue_account="")
    policy_version_approve(draft, user=admin_user, effective_from=dt.date(2000, 1, 2))
    exception_replay(record, user=admin_user, reason="added the UK entity")
    drain(sent_tasks)

    record.refresh_from_db()
    assert record.status == "resolved" and "added the UK entity" in record.resolution
    assert Invoice.objects.get().legal_entity.code == "UK"
    assert Invoice.objects.get().posting_decision.policy_version == draft
    assert Delivery.objects.get().status == "posted"


def test_an_unmappable_invoice_becomes_a_mapping_exception(hub, post_webhook, sandbox, invoice, sent_tasks):
    broken = dict(invoice, currency="xyz")
    post_webhook(sandbox.event("invoice.finalized", broken))
    drain(sent_tasks)
    record = ExceptionRecord.objects.get()
    assert (record.owner_team, record.category) == ("finance", "mapping")
    assert InboundEvent.objects.get().status == "failed"


def test_without_an_erp_connection_the_event_waits_for_it_team(
    stripe_connection, legal_entities, post_webhook, sandbox, invoice, sent_tasks
):
    post_webhook(sandbox.event("invoice.finalized", invoice))
    drain(sent_tasks)
    record = ExceptionRecord.objects.get()
    assert (record.owner_team, record.category) == ("it_operations", "configuration")
