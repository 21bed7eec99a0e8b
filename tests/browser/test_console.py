"""The operations console in a real browser: a finance user fixes a stuck invoice
without a shell; sales operations never sees finance's exceptions; a read-only user
has no button to act."""

from __future__ import annotations

import json

import pytest
from django.apps import apps

from connectors.errors import Permanent
from integration_hub.operations.roles import console_seed
from integration_hub.runtime.models import Delivery, ExceptionRecord
from tests.browser.conftest import screenshot
from tests.helpers import drain
from tests.operations.conftest import _person

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def afternoon(stripe_connection, legal_entities, memory_erp, post_webhook, sandbox, sent_tasks):
    """Three invoices posted, one rejected by the ERP for its tax (finance), and the
    people: a finance user, a sales operations user and a read-only user."""
    console_seed(apps)
    people = {
        "finance": _person("fiona", "Finance operations"),
        "sales": _person("sam", "Sales operations"),
        "readonly": _person("rita", "Read-only"),
    }
    memory_erp.failures.append(Permanent("no tax with rate 10 % in company Acme US Inc."))
    for currency in ("usd", "usd", "eur", "jpy"):
        invoice = sandbox.finalize(sandbox.invoice("cus_1", [("Team plan", 2, 4900)], currency=currency,
                                                   **({"tax_percent": None} if currency == "jpy" else {})))
        post_webhook(sandbox.event("invoice.finalized", invoice))
        drain(sent_tasks)
    stuck = ExceptionRecord.objects.get()
    assert stuck.owner_team == "finance" and stuck.category == "rejected"
    return people, stuck


def _no_broken_assets(page) -> None:
    page.wait_for_load_state("load")
    assert page.failed_assets == []
    # The admin's stylesheet really applied (WhiteNoise served it): the header is coloured.
    assert page.evaluate("document.styleSheets.length") >= 1
    background = page.locator("#header").evaluate("header => getComputedStyle(header).backgroundColor")
    assert background not in ("rgba(0, 0, 0, 0)", "transparent"), background


def test_a_finance_user_fixes_a_stuck_invoice_and_sees_it_posted(browse, afternoon, sent_tasks):
    people, stuck = afternoon
    page = browse("fiona")
    with page.expect_navigation():
        page.click("#hub-console-links >> text=Dashboard")
    _no_broken_assets(page)
    flow = page.locator("[data-flow=invoice_posting]")
    assert flow.locator("[data-indicator='Invoices stuck in validation: tax and totals (ERP)']").inner_text() == "1"
    assert flow.locator("[data-indicator='Invoices awaiting ERP posting']").inner_text() == "0"
    assert page.locator("#teams [data-team='Finance operations'] td").nth(1).inner_text() == "1"
    assert page.locator("#charts svg").count() == 3
    screenshot(page, "dashboard")

    # The number is a link to the list behind it; the list to the exception.
    with page.expect_navigation():
        flow.locator("[data-indicator='Invoices stuck in validation: tax and totals (ERP)']").click()
    _no_broken_assets(page)
    assert page.locator("#result_list tbody tr").count() == 1
    with page.expect_navigation():
        page.locator("#result_list tbody tr th a").first.click()
    _no_broken_assets(page)
    correction = json.loads(page.locator("#id_correction").input_value())
    for line in correction["lines"]:
        line["tax_amount"], line["tax_rate"] = 0, "0"
    page.fill("#id_correction", json.dumps(correction, indent=2))
    page.fill("#id_reason", "US invoices are tax exempt for this customer")
    page.fill("#id_note", "Checked with the tax team")
    screenshot(page, "exception")
    with page.expect_navigation():
        page.click("input[name=_save_and_replay]")
    assert "Replayed" in page.locator(".messagelist").inner_text()

    drain(sent_tasks)  # the worker's part, in this process
    stuck.refresh_from_db()
    assert stuck.status == "resolved" and stuck.delivery.status == Delivery.Status.POSTED

    page.goto(f"{page.hub}/admin/transactions/{stuck.transaction_id}/")
    _no_broken_assets(page)
    assert page.locator(f"[data-delivery='{stuck.delivery_id}'] .delivery-status").inner_text() == "posted"
    timeline = page.locator("#timeline").inner_text()
    assert "permanent" in timeline and "posted" in timeline and "exception" in timeline
    screenshot(page, "transaction")


def test_sales_operations_does_not_see_finances_exceptions(browse, afternoon):
    people, stuck = afternoon
    page = browse("sam")
    page.goto(f"{page.hub}/admin/runtime/exceptionrecord/")
    _no_broken_assets(page)
    assert "0 exception records" in page.locator("#changelist").inner_text() or \
        page.locator("#result_list tbody tr").count() == 0
    screenshot(page, "sales-exceptions")
    response = page.goto(f"{page.hub}/admin/runtime/exceptionrecord/{stuck.pk}/change/")
    # Not found for them: the admin redirects to its index with "doesn't exist".
    assert response.status in (200, 302, 404)
    assert stuck.summary not in page.content()
    api = page.request.get(f"{page.hub}/api/exceptions/{stuck.pk}/")
    assert api.status == 404


def test_a_read_only_user_has_no_replay_button(browse, afternoon):
    people, stuck = afternoon
    page = browse("rita")
    page.goto(f"{page.hub}/admin/runtime/exceptionrecord/{stuck.pk}/change/")
    _no_broken_assets(page)
    assert stuck.summary.split(":")[0] in page.content()
    assert page.locator("input[name=_save_and_replay]").count() == 0
    assert page.locator("#exception-workflow").count() == 0
    page.goto(f"{page.hub}/admin/runtime/exceptionrecord/")
    assert page.locator("select[name=action]").count() == 0
    screenshot(page, "readonly-exception")
