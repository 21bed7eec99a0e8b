"""Exchange-rate loads planned from the rate source (the ECB sandbox over HTTP):
once per currency × date × ERP, unpublished currencies reported, and the API's and
the beat row's clear outcomes. The Tryton side is in tests/e2e/test_exchange_rates.py."""

import datetime as dt

import pytest
from django.core.cache import cache
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from canonical.models import ExchangeRate
from connectors.rates.sandbox import EcbSandbox
from connectors.sandbox_server import Fault
from connectors.services import connection_upsert
from integration_hub.runtime.models import Delivery
from integration_hub.workflows.exchange_rates import NoRatesPublished, rates_load

pytestmark = pytest.mark.django_db
MONDAY = dt.date(2026, 11, 30)


@pytest.fixture
def ecb():
    sandbox = EcbSandbox(today=MONDAY)
    sandbox.serve()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def source(ecb, memory_erp, sent_tasks):
    connection_upsert(name="erp-eu", vendor="memory-erp", role="erp", config={}, credentials={})
    return connection_upsert(name="ecb", vendor="ecb", role="rates",
                             config={"url": ecb.url + "/", "currencies": ["NOK", "JPY", "KWD"]}, credentials={})


def test_each_currency_is_planned_once_per_date_and_erp_and_unpublished_ones_are_named(source, sent_tasks):
    result = rates_load(on=dt.date(2026, 11, 29), source=source)  # a Sunday: Friday's publication
    assert (result.published, result.currencies, result.unpublished) == (dt.date(2026, 11, 27), ("JPY", "NOK"),
                                                                         ("KWD",))
    assert (result.planned, result.erps) == (4, ("erp", "erp-eu"))
    keys = set(Delivery.objects.filter(action="exchange_rate.load").values_list("idempotency_key", flat=True))
    assert len(keys) == 4
    assert ExchangeRate.objects.filter(date=result.published).count() == result.stored > 2
    again = rates_load(on=dt.date(2026, 11, 28), source=source)  # Saturday: the same publication
    assert (again.stored, again.planned) == (0, 0)
    assert Delivery.objects.filter(action="exchange_rate.load").count() == 4


def test_without_configured_currencies_the_booked_and_invoiced_ones_are_wanted(source, legal_entities):
    source.config = {"url": source.config["url"]}
    source.save()
    assert rates_load(on=MONDAY, source=source).currencies == ("EUR", "JPY", "USD")


def test_nothing_published_by_the_date_is_a_clear_refusal(source):
    with pytest.raises(NoRatesPublished, match="on or before 1990-01-01"):
        rates_load(on=dt.date(1990, 1, 1), source=source)


def test_the_api_loads_and_refuses_clearly(source, admin_client, client, django_user_model, ecb):
    def load(user_client, body):
        cache.clear()  # the sync-trigger throttle (6/min) is not what this test is about
        return user_client.post(reverse("rates-load"), body, content_type="application/json")

    answer = load(admin_client, {"date": "2026-11-30"})
    assert answer.status_code == 200 and answer.json()["planned"] == 4
    assert load(admin_client, {"date": "30/11/2026"}).status_code == 400
    refused = load(admin_client, {"date": "1990-01-01"})
    assert (refused.status_code, refused.json()["error"]) == (409, "no_rates")
    missing = load(admin_client, {"connection": "nope"})
    assert (missing.status_code, missing.json()["error"]) == (409, "not_configured")
    ecb.faults.add(Fault(503, times=5))
    down = load(admin_client, {})
    assert (down.status_code, down.json()["error"]) == (503, "source_unavailable")
    client.force_login(django_user_model.objects.create_user("viewer"))
    assert load(client, {}).status_code == 403


def test_the_admin_page_loads_the_rates(source, admin_client):
    page = admin_client.get(reverse("admin:canonical_exchangerate_load"))
    assert page.status_code == 200 and b"Load reference rates" in page.content
    done = admin_client.post(reverse("admin:canonical_exchangerate_load"), {"date": "2026-11-30"}, follow=True)
    assert b"4 ERP loads planned" in done.content
    assert ExchangeRate.objects.filter(date=MONDAY, currency="NOK").exists()


def test_a_weekday_beat_row_loads_the_rates():
    task = PeriodicTask.objects.get(name="hub: exchange rates (weekdays)")
    assert (task.task, task.crontab.day_of_week, task.crontab.hour, task.enabled) == (
        "hub.exchange_rates_load", "1-5", "16", True)
