"""Exchange rates against the real Tryton: an invoice in a currency the ERP has no rate
for on its date is a finance exception with nothing created; the rate source's rates
load into Tryton through the outbox (once per currency × date × ERP); the replay posts
the invoice with the company-currency amount Tryton computes from the loaded rate."""

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from django.core.cache import cache
from django.urls import reverse

from canonical.models import ExchangeRate, Invoice, PostingPolicyVersion, PostingRule, TaxMapping
from canonical.policy_services import policy_version_approve, policy_version_draft
from connectors.base import ReferenceRates
from connectors.rates.sandbox import EcbSandbox
from connectors.services import connection_upsert
from integration_hub.operations.services import exception_replay
from integration_hub.runtime.models import Delivery, ExceptionRecord
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.stack, pytest.mark.django_db(transaction=True)]
TODAY = dt.date.today()


@pytest.fixture
def ecb():
    sandbox = EcbSandbox()
    sandbox.serve()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def hub(celery_worker_process, tryton_server, stripe_connection, legal_entities, admin_user, ecb):
    connection_upsert(name="tryton", vendor="tryton", role="erp",
                      config=tryton_server.connection_config(), credentials=tryton_server.credentials())
    # Only NOK: the session's Tryton is shared, and other tests rely on its fixed EUR rate.
    connection_upsert(name="ecb", vendor="ecb", role="rates", config={"url": ecb.url + "/", "currencies": ["NOK"]},
                      credentials={})
    draft = policy_version_draft(base=PostingPolicyVersion.objects.get(number=1), note="Norway")
    PostingRule.objects.create(version=draft, priority=1, name="Norway", countries=["NO"],
                               legal_entity=legal_entities["EU"], revenue_account="4100", cost_center="CC-EMEA")
    TaxMapping.objects.create(version=draft, jurisdiction="NO", rate=0, tax_code="")
    return policy_version_approve(draft, user=admin_user, effective_from=TODAY)


def test_an_invoice_without_a_rate_waits_as_an_exception_until_the_rates_load_then_posts_on_replay(
    hub, erp, sandbox, post_webhook, tryton_server, admin_user, client
):
    nok = sandbox.finalize(sandbox.invoice(sandbox.customer("Fjord AS", "post@fjord.no", country="NO"),
                                           [("Platform", 1, 123456)], currency="nok", tax_percent=None))
    post_webhook(sandbox.event("invoice.finalized", nok))
    wait_for(lambda: Delivery.objects.filter(action="invoice.post", status="dead").exists(),
             what="the NOK invoice to dead-letter")
    record = ExceptionRecord.objects.get()
    assert (record.owner_team, record.category) == ("finance", "mapping")
    assert "no NOK exchange rate on or before" in record.summary
    assert erp.invoices(reference=nok["id"]) == []

    client.force_login(admin_user)
    answer = client.post(reverse("rates-load"), {}, content_type="application/json")
    assert answer.status_code == 200, answer.content
    assert (answer.json()["currencies"], answer.json()["planned"], answer.json()["erps"]) == (["NOK"], 1, ["tryton"])
    cache.clear()  # the sync-trigger throttle
    again = client.post(reverse("rates-load"), {}, content_type="application/json").json()
    assert (again["stored"], again["planned"]) == (0, 0)  # once per currency × date × ERP
    wait_for(lambda: Delivery.objects.filter(action="exchange_rate.load", status="posted").exists(),
             what="the NOK rate to load")
    published = dt.date.fromisoformat(answer.json()["published"])
    rows = ExchangeRate.objects.filter(source="ecb", date=published)
    reference = ReferenceRates(date=published, rates={r.currency: r.rate for r in rows if r.currency != "EUR"})
    nok_per_usd = reference.against("USD", "NOK")
    [loaded] = erp.client.call("currency.currency.rate", "search_read",
                               [("currency.code", "=", "NOK"), ("date", "=", published)], 0, None, None, ["rate"])
    assert loaded["rate"] == nok_per_usd

    exception_replay(record, user=admin_user, reason="NOK rate loaded")
    wait_for(lambda: Delivery.objects.filter(action="invoice.post", status="posted").exists(),
             what="the replayed NOK invoice to post")
    [posted] = erp.invoices(reference=nok["id"])
    assert (posted["currency"], posted["total_amount"], posted["company"]) == (
        "NOK", Decimal("1234.56"), tryton_server.info["companies"]["EUR"])
    # Tryton: amount × EUR rate / NOK rate (both per USD; EUR is 0.9 in the test ERP), to the cent.
    expected = (Decimal("1234.56") * Decimal("0.9") / nok_per_usd).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
    decision = Invoice.objects.get(source_id=nok["id"]).posting_decision
    assert (decision.company_currency, decision.company_total) == ("EUR", int(expected * 100))
