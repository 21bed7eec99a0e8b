"""Invoice posting by policy: the decision (entity, ERP connection, accounts, cost
centers, taxes) is taken once and recorded with its version; two ERPs at once; the
admin's dry run and approval."""

import datetime as dt

import pytest

from canonical.models import Invoice, PostingPolicyVersion, PostingRule, Region, TaxMapping
from canonical.policy_services import policy_version_approve, policy_version_draft
from connectors.services import connection_upsert
from integration_hub.runtime.models import Delivery, ExceptionRecord
from tests.helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)
TODAY = dt.date.today()


@pytest.fixture
def regional(stripe_connection, legal_entities, memory_erp, sent_tasks, admin_user):
    """v2: EU customers → EU entity on 'erp-eu' (a second ERP), Gulf → EU in the
    invoice currency, the rest by the bootstrap rules; German VAT, reverse charge."""
    connection_upsert(name="erp-eu", vendor="memory-erp", role="erp", config={}, credentials={})
    eu = legal_entities["EU"]
    eu.erp_connection = "erp-eu"
    eu.save()
    legal_entities["US"].erp_connection = "erp"
    legal_entities["US"].save()
    legal_entities["JP"].erp_connection = "erp"
    legal_entities["JP"].save()
    Region.objects.create(code="EU", name="European Union", countries=["AT", "DE", "FR", "IT", "NL"])
    draft = policy_version_draft(base=PostingPolicyVersion.objects.get(number=1), note="regional")
    PostingRule.objects.create(version=draft, priority=1, name="EU customers", region=Region.objects.get(),
                               legal_entity=eu, revenue_account="4100", cost_center="CC-EMEA")
    PostingRule.objects.create(version=draft, priority=2, name="Gulf", countries=["KW", "BH"], legal_entity=eu,
                               revenue_account="4100", cost_center="CC-GULF")
    for jurisdiction, rate, status, code in [("DE", 19, "", "DE-VAT-19"), ("DE", 7, "", "DE-VAT-7"),
                                             ("EU", 0, "b2b", "EU-RC-0"), ("KW", 0, "", "")]:
        TaxMapping.objects.create(version=draft, jurisdiction=jurisdiction, rate=rate, tax_status=status,
                                  tax_code=code)
    return policy_version_approve(draft, user=admin_user, effective_from=TODAY)


def post(post_webhook, sandbox, sent_tasks, customer, lines, currency, tax_percent):
    invoice = sandbox.finalize(sandbox.invoice(customer, lines, currency=currency, tax_percent=tax_percent))
    post_webhook(sandbox.event("invoice.finalized", invoice))
    drain(sent_tasks)
    return invoice


def test_german_vat_and_reverse_charge_post_to_the_eu_entity_on_its_own_erp(
    regional, memory_erp, post_webhook, sandbox, sent_tasks
):
    consumer = post(post_webhook, sandbox, sent_tasks, sandbox.customer("Max", "m@x.de", country="DE"),
                    [("Seats", 2, 5000)], "eur", 19)
    business = post(post_webhook, sandbox, sent_tasks,
                    sandbox.customer("Dupont SA", "a@dupont.fr", country="FR", tax_ids=[("eu_vat", "FR123")]),
                    [("Seats", 2, 5000)], "eur", None)

    connection, entity, posting = memory_erp.postings[consumer["id"]]
    assert (connection, entity, posting.policy_version) == ("erp-eu", "EU", regional.number)
    assert [(line.revenue_account, line.cost_center, line.tax_code) for line in posting.lines] == [
        ("4100", "CC-EMEA", "DE-VAT-19")]
    assert memory_erp.postings[business["id"]][2].lines[0].tax_code == "EU-RC-0"
    record = Invoice.objects.get(source_id=business["id"])
    assert record.posting_decision.policy_version == regional and record.posting_decision.facts["tax_status"] == "b2b"
    assert set(Delivery.objects.values_list("connection__name", flat=True)) == {"erp-eu"}


def test_a_kwd_invoice_posts_in_kwd_to_the_entity_the_policy_names(regional, memory_erp, post_webhook, sandbox,
                                                                 sent_tasks):
    kwd = post(post_webhook, sandbox, sent_tasks, sandbox.customer("Al Noor", "x@noor.kw", country="KW"),
               [("Plan", 1, 12345)], "kwd", None)
    record = Invoice.objects.get(source_id=kwd["id"])
    assert (record.currency, record.total, record.legal_entity.code) == ("KWD", 12345, "EU")
    assert memory_erp.postings[kwd["id"]][:2] == ("erp-eu", "EU")
    assert record.posting_decision.lines[0]["cost_center"] == "CC-GULF"


def test_a_tax_rate_with_no_mapping_is_a_finance_exception_naming_jurisdiction_and_rate(
    regional, post_webhook, sandbox, sent_tasks, memory_erp
):
    post(post_webhook, sandbox, sent_tasks, sandbox.customer("Max", "m@x.de", country="DE"),
         [("Seats", 1, 1000)], "eur", 16)
    record = ExceptionRecord.objects.get()
    assert (record.owner_team, record.category) == ("finance", "policy")
    # Billing (basil shape) names the rate by id only: the amount it computed is what is unmapped.
    assert "jurisdiction DE at an unstated rate (tax 160 on 1000" in record.summary
    assert not Invoice.objects.exists() and memory_erp.calls == []


def test_earlier_invoices_keep_their_version_and_the_next_follows_the_new_one(
    regional, memory_erp, post_webhook, sandbox, sent_tasks, admin_user
):
    customer = sandbox.customer("Max", "m@x.de", country="DE")
    first = post(post_webhook, sandbox, sent_tasks, customer, [("Seats", 1, 1000)], "eur", 19)
    draft = policy_version_draft(base=regional, note="DACH cost center")
    draft.rules.filter(name="EU customers").update(cost_center="CC-DACH")
    policy_version_approve(draft, user=admin_user, effective_from=TODAY)
    second = post(post_webhook, sandbox, sent_tasks, customer, [("Seats", 1, 1000)], "eur", 19)
    # A later event about the first invoice (its payment) does not re-decide it.
    post_webhook(sandbox.event("invoice.paid", sandbox.pay(first)))
    drain(sent_tasks)

    decided = {i.source_id: i.posting_decision for i in Invoice.objects.select_related("posting_decision")}
    assert decided[first["id"]].policy_version == regional and decided[first["id"]].lines[0]["cost_center"] == "CC-EMEA"
    assert decided[second["id"]].policy_version == draft and decided[second["id"]].lines[0]["cost_center"] == "CC-DACH"
    assert memory_erp.postings[second["id"]][2].policy_version == draft.number


def test_the_admin_dry_runs_a_draft_per_document_and_a_finance_user_approves_it(
    regional, post_webhook, sandbox, sent_tasks, client, admin_user
):
    post(post_webhook, sandbox, sent_tasks, sandbox.customer("Max", "m@x.de", country="DE"),
         [("Seats", 1, 1000)], "eur", 19)
    post(post_webhook, sandbox, sent_tasks, sandbox.customer("Ada", "a@ada.us", country="US"),
         [("Seats", 1, 1000)], "usd", 10)
    draft = policy_version_draft(base=regional, note="DACH")
    draft.rules.filter(name="EU customers").update(cost_center="CC-DACH")
    client.force_login(admin_user)

    page = client.get(f"/admin/canonical/postingpolicyversion/{draft.pk}/dry-run/")
    assert page.status_code == 200
    assert page.context["changed"] == 1 and len(page.context["rows"]) == 2
    [changed] = [row for row in page.context["rows"] if row.changed]
    assert changed.changed == ("cost center",) and "CC-DACH" in changed.draft

    answer = client.post(f"/admin/canonical/postingpolicyversion/{draft.pk}/approve/",
                         {"effective_from": TODAY.isoformat()})
    assert answer.status_code == 302
    draft.refresh_from_db()
    assert draft.status == "approved" and draft.approved_by == admin_user
    assert client.get(f"/admin/canonical/postingpolicyversion/{draft.pk}/change/").status_code == 200
