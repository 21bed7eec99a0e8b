"""Posting policies against the real Tryton: German VAT and EU reverse charge in the
EU entity, a Kuwaiti invoice in KWD to the fils, and a policy change previewed,
approved and followed by the next invoice while the earlier one keeps its version."""

import datetime as dt
from decimal import Decimal

import pytest

from canonical.models import Invoice, PostingPolicyVersion, PostingRule, Region, TaxMapping
from canonical.policy_services import policy_dry_run, policy_version_approve, policy_version_draft
from connectors.services import connection_upsert
from integration_hub.runtime.models import Delivery, ExceptionRecord
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.stack, pytest.mark.django_db(transaction=True)]
TODAY = dt.date.today()


@pytest.fixture
def hub(celery_worker_process, tryton_server, stripe_connection, legal_entities, admin_user):
    connection_upsert(name="tryton", vendor="tryton", role="erp",
                      config=tryton_server.connection_config(), credentials=tryton_server.credentials())
    eu = legal_entities["EU"]
    Region.objects.create(code="EU", name="European Union", countries=["AT", "DE", "FR", "IT", "NL"])
    draft = policy_version_draft(base=PostingPolicyVersion.objects.get(number=1), note="regional")
    PostingRule.objects.create(version=draft, priority=1, name="EU customers", region=Region.objects.get(),
                               legal_entity=eu, revenue_account="4100", cost_center="CC-EMEA")
    PostingRule.objects.create(version=draft, priority=2, name="Gulf", countries=["KW"], legal_entity=eu,
                               revenue_account="4100", cost_center="CC-GULF")
    for jurisdiction, rate, status, code in [("DE", 19, "", "DE-VAT-19"), ("DE", 7, "", "DE-VAT-7"),
                                             ("EU", 0, "b2b", "EU-RC-0"), ("KW", 0, "", ""),
                                             ("FR", 5.5, "", "FR-VAT-5.5")]:
        TaxMapping.objects.create(version=draft, jurisdiction=jurisdiction, rate=rate, tax_status=status,
                                  tax_code=code)
    return policy_version_approve(draft, user=admin_user, effective_from=TODAY)


def settled(count):
    def check():
        return Delivery.objects.filter(status__in=["posted", "dead"]).count() == count
    return check


def analytic_codes(erp, invoice_id):
    lines = erp.client.call("account.invoice.line", "search_read", [("invoice", "=", invoice_id)], 0, None, None,
                            ["account.code", "taxes", "analytic_accounts"])
    result = []
    for line in lines:
        entries = erp.client.call("analytic.account.entry", "read", line["analytic_accounts"], ["account.code"])
        taxes = erp.client.call("account.tax", "read", line["taxes"], ["name"]) if line["taxes"] else []
        result.append((line["account."]["code"], [e["account."]["code"] for e in entries if e.get("account.")],
                       [t["name"] for t in taxes]))
    return result


def test_german_vat_and_reverse_charge_post_to_the_eu_entity_with_the_right_tax(
    hub, erp, sandbox, post_webhook, tryton_server
):
    consumer = sandbox.finalize(sandbox.invoice(sandbox.customer("Max Mustermann", "m@x.de", country="DE"),
                                                [("Seats", 3, 3333)], currency="eur", tax_percent=19))
    business = sandbox.finalize(sandbox.invoice(
        sandbox.customer("Dupont SA", "a@dupont.fr", country="FR", tax_ids=[("eu_vat", "FR40303265045")]),
        [("Seats", 2, 5000)], currency="eur", tax_percent=None))
    for invoice in (consumer, business):
        assert post_webhook(sandbox.event("invoice.finalized", invoice)).status_code == 200
    wait_for(settled(2), what="both invoices to post")
    assert set(Delivery.objects.values_list("status", flat=True)) == {"posted"}

    [de] = erp.invoices(reference=consumer["id"])
    [fr] = erp.invoices(reference=business["id"])
    eu_company = tryton_server.info["companies"]["EUR"]
    assert (de["company"], de["untaxed_amount"], de["tax_amount"], de["total_amount"]) == (
        eu_company, Decimal("99.99"), Decimal("19.00"), Decimal("118.99"))
    assert analytic_codes(erp, de["id"]) == [("4100", ["CC-EMEA"], ["DE-VAT-19"])]
    assert (fr["company"], fr["tax_amount"], fr["total_amount"]) == (eu_company, Decimal("0.00"), Decimal("100.00"))
    assert analytic_codes(erp, fr["id"]) == [("4100", ["CC-EMEA"], ["EU-RC-0"])]
    decision = Invoice.objects.get(source_id=consumer["id"]).posting_decision
    assert (decision.policy_version, decision.company_currency, decision.company_total) == (hub, "EUR", 11899)


def test_a_kuwaiti_invoice_posts_in_kwd_exact_to_the_fils_and_records_the_company_amounts(
    hub, erp, sandbox, post_webhook, tryton_server
):
    kwd = sandbox.finalize(sandbox.invoice(sandbox.customer("Al Noor Trading", "x@noor.kw", country="KW"),
                                           [("Platform", 1, 12345), ("Support", 3, 1111)], currency="kwd",
                                           tax_percent=None))
    post_webhook(sandbox.event("invoice.finalized", kwd))
    wait_for(settled(1), what="the KWD invoice to post")

    [posted] = erp.invoices(reference=kwd["id"])
    assert (posted["currency"], posted["total_amount"], posted["state"]) == ("KWD", Decimal("15.678"), "posted")
    assert posted["company"] == tryton_server.info["companies"]["EUR"]
    decision = Invoice.objects.get(source_id=kwd["id"]).posting_decision
    # 15.678 KWD at the ERP's rates (EUR 0.9, KWD 0.307 per USD) = 45.96 EUR.
    assert (decision.company_currency, decision.company_total) == ("EUR", 4596)


def test_a_tax_the_erp_lacks_is_a_finance_exception_and_the_queue_moves_on(hub, erp, sandbox, post_webhook):
    missing = sandbox.finalize(sandbox.invoice(sandbox.customer("Café Lumière", "c@l.fr", country="FR"),
                                               [("Books", 1, 2000)], currency="eur", tax_percent=Decimal("5.5")))
    fine = sandbox.finalize(sandbox.invoice(sandbox.customer("Max", "m@x.de", country="DE"),
                                            [("Seats", 1, 1000)], currency="eur", tax_percent=7))
    post_webhook(sandbox.event("invoice.finalized", missing))
    post_webhook(sandbox.event("invoice.finalized", fine))
    wait_for(settled(2), what="one dead, one posted")

    record = ExceptionRecord.objects.get()
    assert record.owner_team == "finance" and "tax code 'FR-VAT-5.5' is not in the ERP" in record.summary
    assert erp.invoices(reference=missing["id"]) == []
    [posted] = erp.invoices(reference=fine["id"])
    assert posted["tax_amount"] == Decimal("0.70")


def test_a_policy_change_previewed_approved_and_followed_while_earlier_invoices_keep_theirs(
    hub, erp, sandbox, post_webhook, admin_user
):
    customer = sandbox.customer("Max Mustermann", "m@x.de", country="DE")
    first = sandbox.finalize(sandbox.invoice(customer, [("Seats", 1, 1000)], currency="eur", tax_percent=19))
    post_webhook(sandbox.event("invoice.finalized", first))
    wait_for(settled(1), what="the first invoice")

    draft = policy_version_draft(base=hub, note="services revenue for EU customers")
    draft.rules.filter(name="EU customers").update(revenue_account="4200", cost_center="CC-SERVICES")
    [preview] = policy_dry_run(draft, limit=5)
    assert set(preview.changed) == {"account", "cost center"} and "4200" in preview.draft
    policy_version_approve(draft, user=admin_user, effective_from=TODAY)

    second = sandbox.finalize(sandbox.invoice(customer, [("Seats", 1, 1000)], currency="eur", tax_percent=19))
    post_webhook(sandbox.event("invoice.finalized", second))
    wait_for(settled(2), what="the second invoice")

    [one] = erp.invoices(reference=first["id"])
    [two] = erp.invoices(reference=second["id"])
    assert analytic_codes(erp, one["id"]) == [("4100", ["CC-EMEA"], ["DE-VAT-19"])]
    assert analytic_codes(erp, two["id"]) == [("4200", ["CC-SERVICES"], ["DE-VAT-19"])]
    versions = dict(Invoice.objects.values_list("source_id", "posting_decision__policy_version__number"))
    assert versions == {first["id"]: hub.number, second["id"]: draft.number}
