"""The issue's bad inputs for posting policies, each with its clear outcome: an unknown
customer country, a currency with no rate for the date, a tax rate with no mapping,
two rules of equal priority that both match, and a policy approved (or edited) while
documents are being decided — on PostgreSQL, with threads: each decision is exactly one
version, never a mix."""

import datetime as dt
import threading

import pytest
from django.db import connection, transaction
from django.test import Client

from canonical.models import Invoice, PostingDecision, PostingPolicyVersion, PostingRule, TaxMapping
from canonical.policy import DocumentFacts, decide
from canonical.policy_services import (
    PolicyInvalid,
    PolicyNotEditable,
    policy_version_approve,
    policy_version_draft,
    policy_version_edit_lock,
)
from integration_hub.runtime.models import ExceptionRecord, InboundEvent
from integration_hub.runtime.services import inbound_process
from tests.helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)
TODAY = dt.date.today()


@pytest.fixture
def germany(stripe_connection, legal_entities, memory_erp, sent_tasks, admin_user):
    draft = policy_version_draft(base=PostingPolicyVersion.objects.get(number=1), note="Germany")
    PostingRule.objects.create(version=draft, priority=1, name="Germany", countries=["DE"],
                               legal_entity=legal_entities["EU"], revenue_account="4100", cost_center="CC-EMEA")
    TaxMapping.objects.create(version=draft, jurisdiction="DE", rate=19, tax_code="DE-VAT-19")
    return policy_version_approve(draft, user=admin_user, effective_from=TODAY)


def post(post_webhook, sandbox, sent_tasks, customer, lines, currency, tax_percent):
    invoice = sandbox.finalize(sandbox.invoice(customer, lines, currency=currency, tax_percent=tax_percent))
    post_webhook(sandbox.event("invoice.finalized", invoice))
    drain(sent_tasks)
    return invoice


def test_an_unknown_customer_country_is_a_finance_policy_exception_saying_so(germany, post_webhook, sandbox,
                                                                               sent_tasks, memory_erp):
    post(post_webhook, sandbox, sent_tasks, sandbox.customer("Nowhere Ltd", "n@where.example", country=None),
         [("Seats", 1, 1000)], "eur", 19)
    record = ExceptionRecord.objects.get()
    assert (record.owner_team, record.category) == ("finance", "policy")
    assert "jurisdiction unknown" in record.summary and "the customer's country is unknown" in record.summary
    assert not Invoice.objects.exists() and memory_erp.calls == []


def test_a_tax_rate_with_no_mapping_names_jurisdiction_and_rate(germany, post_webhook, sandbox, sent_tasks):
    post(post_webhook, sandbox, sent_tasks, sandbox.customer("Max", "m@x.de", country="DE"),
         [("Books", 1, 1000)], "eur", 7)
    record = ExceptionRecord.objects.get()
    assert (record.owner_team, record.category) == ("finance", "policy")
    assert "maps no tax for jurisdiction DE" in record.summary and "tax 70 on 1000" in record.summary


def test_two_rules_of_equal_priority_that_both_match_are_refused_at_approval_naming_both(
    legal_entities, admin_user
):
    draft = policy_version_draft(base=PostingPolicyVersion.objects.get(number=1), note="clash")
    PostingRule.objects.create(version=draft, priority=5, name="Germany", countries=["DE"],
                               legal_entity=legal_entities["EU"])
    PostingRule.objects.create(version=draft, priority=5, name="Euro invoices", currency="EUR",
                               legal_entity=legal_entities["US"])
    with pytest.raises(PolicyInvalid) as refused:
        policy_version_approve(draft, user=admin_user, effective_from=TODAY)
    assert "'Germany', 'Euro invoices'" in str(refused.value) and "share priority 5" in str(refused.value)
    draft.refresh_from_db()
    assert draft.status == "draft"


def _versions(legal_entities, admin_user, base, count):
    """``count`` drafts, each with its own account, cost center and tax code on both rules."""
    drafts = []
    for n in range(count):
        draft = policy_version_draft(base=base, note=f"race {n}")
        draft.rules.filter(name="Germany").update(revenue_account=f"4{n}00", cost_center=f"CC-{n}")
        draft.tax_mappings.filter(jurisdiction="DE").update(tax_code=f"DE-19-{n}")
        drafts.append(draft)
    return drafts


def test_documents_decided_while_versions_are_approved_each_follow_exactly_one_version(
    germany, legal_entities, admin_user, sandbox, sent_tasks
):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serializes writers; the race needs a server database (CI runs PostgreSQL)")
    drafts = _versions(legal_entities, admin_user, germany, 4)
    customer = sandbox.customer("Max", "m@x.de", country="DE")
    events = [sandbox.event("invoice.finalized", sandbox.finalize(sandbox.invoice(
        customer, [("Seats", 2, 1000), ("Support", 1, 500)], currency="eur", tax_percent=19)))
        for _ in range(24)]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def decide_some(batch):
        try:
            web = Client()
            start.wait()
            for event in batch:
                body, headers = sandbox.webhook_request(event)
                web.post("/api/webhooks/stripe/", data=body, content_type="application/json",
                         headers={k: v for k, v in headers.items() if k != "Content-Type"})
                inbound_process(InboundEvent.objects.get(source="stripe", external_id=event["id"]).pk)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
        finally:
            connection.close()

    def approve_all():
        try:
            start.wait()
            for draft in drafts:
                policy_version_approve(draft, user=admin_user, effective_from=TODAY)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=decide_some, args=(events[i::3],)) for i in range(3)]
    threads.append(threading.Thread(target=approve_all))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    decisions = list(PostingDecision.objects.select_related("policy_version"))
    assert len(decisions) == 24 and not ExceptionRecord.objects.exists()
    for decision in decisions:
        version = decision.policy_version
        # The stored decision is what its own version decides, line for line ...
        assert decide(version.snapshot, DocumentFacts.from_json(decision.facts)).lines_json() == decision.lines
        # ... and every line carries that version's account, cost center and tax, no other's.
        rule = version.snapshot["rules"][0]
        tax = next(t for t in version.snapshot["taxes"] if t["jurisdiction"] == "DE")
        assert {(line["revenue_account"], line["cost_center"], line["tax_code"]) for line in decision.lines} == {
            (rule["revenue_account"], rule["cost_center"], tax["tax_code"])}
    assert {d.policy_version.number for d in decisions} <= {germany.number, *(d.number for d in drafts)}


def test_an_edit_and_an_approval_of_one_draft_never_interleave(germany, legal_entities, admin_user):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no row locks; the race needs a server database (CI runs PostgreSQL)")
    draft = policy_version_draft(base=germany, note="services")
    locked, errors = threading.Event(), []

    def edit():
        try:
            with transaction.atomic():
                policy_version_edit_lock(draft)
                draft.rules.filter(name="Germany").update(revenue_account="4200")
                locked.set()
                threading.Event().wait(0.5)  # the approval waits for this edit to commit
                draft.tax_mappings.filter(jurisdiction="DE").update(tax_code="DE-VAT-7")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    editor = threading.Thread(target=edit)
    editor.start()
    assert locked.wait(30)
    approved = policy_version_approve(draft, user=admin_user, effective_from=TODAY)
    editor.join(30)
    assert not errors, errors
    rule = next(r for r in approved.snapshot["rules"] if r["name"] == "Germany")
    tax = next(t for t in approved.snapshot["taxes"] if t["jurisdiction"] == "DE")
    assert (rule["revenue_account"], tax["tax_code"]) == ("4200", "DE-VAT-7")  # the whole edit, not half
    with pytest.raises(PolicyNotEditable), transaction.atomic():
        policy_version_edit_lock(approved)  # and no edit after approval
