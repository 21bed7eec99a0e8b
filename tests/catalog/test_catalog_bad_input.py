"""Bad input from the product platform: each item's fault is an exception record for
product operations naming the item and field; the rest of the run completes."""

from __future__ import annotations

import pytest

from canonical.models import CatalogVersion, PriceVersion, ProductVersion
from connectors.models import Connection
from integration_hub.runtime.models import ExceptionRecord, InboundEvent
from integration_hub.runtime.services import exception_replay
from integration_hub.workflows.catalog_pull import catalog_pull_now, catalog_pull_request

pytestmark = pytest.mark.django_db(transaction=True)


def pull(**kwargs):
    return catalog_pull_now(Connection.objects.get(name="catalog"), **kwargs)


def mapping_records():
    return list(ExceptionRecord.objects.filter(category="mapping").order_by("pk"))


def test_broken_items_become_exception_records_and_the_rest_of_the_run_completes(catalog, platform):
    platform.item_put({"name": "No SKU", "prices": []}, key="nosku")
    platform.item_put({"sku": "NEG", "name": "Negative", "prices": [
        {"id": "neg-usd", "currency": "usd", "unit_amount": "-5.00", "recurring": {"interval": "month"}}]})
    platform.item_put({"sku": "NAN", "name": "Not a number", "prices": [
        {"id": "nan-usd", "currency": "usd", "unit_amount": "twelve", "recurring": {"interval": "month"}}]})
    platform.item_put({"sku": "XXX", "name": "Unknown currency", "prices": [
        {"id": "xxx-zzz", "currency": "zzz", "unit_amount": "1.00", "recurring": {"interval": "month"}}]})
    platform.item_put({"sku": "PRO", "name": "Pro, listed twice", "prices": []}, key="PRO-again")
    run = pull()
    assert run.status == "succeeded"
    assert (run.counts["items_seen"], run.counts["errors"]) == (11, 5)
    assert ProductVersion.objects.filter(status="draft").count() == 6  # the good six
    summaries = [r.summary for r in mapping_records()]
    assert all(r.owner_team == "product_operations" for r in mapping_records())
    assert any("field product.sku (expression 'sku'): is missing" in s for s in summaries)
    assert any("SKU NEG" in s and "field price.amount" in s and "is negative" in s for s in summaries)
    assert any("SKU NAN" in s and "is not a number: 'twelve'" in s for s in summaries)
    assert any("SKU XXX" in s and "field price.currency" in s and "unknown currency 'zzz'" in s for s in summaries)
    assert any("SKU PRO appears twice in one pull" in s for s in summaries)
    assert not ProductVersion.objects.filter(product__sku__in=["NEG", "NAN", "XXX"]).exists()


def test_a_fixed_mapping_is_replayed_from_the_exception_record(catalog, platform, admin_user, drain):
    platform.item_put({"sku": "CENTS", "name": "Priced in cents", "prices": [
        {"id": "cents-usd", "currency": "usd", "unit_amount": "12.345", "recurring": {"interval": "month"}}]})
    pull()
    record = next(r for r in mapping_records() if "CENTS" in r.summary)
    assert "has more than 2 decimals for USD" in record.summary
    connection = Connection.objects.get(name="catalog")
    connection.config = {**connection.config, "mapping": {"price": {"amount": "`1234`"}, "amount_format": "minor"}}
    connection.save()
    exception_replay(record, user=admin_user, reason="mapping fixed")
    drain()
    version = PriceVersion.objects.get(price__source_id="cents-usd")
    assert (version.unit_amount, version.status) == (1234, CatalogVersion.Status.DRAFT)
    record.refresh_from_db()
    assert record.status == "resolved"


def test_a_page_that_is_not_json_fails_the_run_with_a_record_and_keeps_what_was_read(catalog, platform):
    connection = Connection.objects.get(name="catalog")
    connection.config = {**connection.config, "paging": {"style": "page", "limit": 3}}
    connection.save()
    platform.garbage_next(times=0)
    run = pull()
    assert run.status == "succeeded" and run.counts["pages"] == 2
    platform.item_rename("PRO", "Pro 2")
    platform.garbage_next()
    failed = pull(full_scan=True)
    assert failed.status == "failed" and "catalog page 1 is not JSON (text/html)" in failed.error
    record = ExceptionRecord.objects.get(category="processing")
    assert f"catalog pull #{failed.pk}" in record.summary


def test_5xx_and_429_pages_are_retried_after_retry_after(catalog, platform, monkeypatch):
    from connectors.product_platform import client

    waits = []
    monkeypatch.setattr(client.time, "sleep", waits.append)
    platform.fail_next(503)
    platform.fail_next(429, retry_after=7)
    run = pull()
    assert run.status == "succeeded" and run.counts["new_versions"] == 22
    assert waits == [2.0, 7.0]


def test_the_signed_webhook_asks_for_one_early_debounced_pull(catalog, platform, client):
    for _ in range(3):
        body, headers = platform.catalog_changed_request(["PRO"])
        response = client.post("/api/webhooks/catalog/", data=body, content_type="application/json",
                               headers={k: v for k, v in headers.items() if k != "Content-Type"})
        assert response.status_code == 200, response.content
    from integration_hub.runtime.services import inbound_process

    for event in InboundEvent.objects.filter(event_type="catalog.changed"):
        inbound_process(event.pk)
    from integration_hub.workflows.models import SyncRun

    runs = SyncRun.objects.filter(kind="catalog", trigger="webhook")
    assert runs.count() == 1 and runs.get().status == "queued"
    assert [(name, countdown) for name, _, countdown in catalog if name == "hub.catalog_pull_run"] == [
        ("hub.catalog_pull_run", 30.0)]
    body, headers = platform.catalog_changed_request()
    tampered = client.post("/api/webhooks/catalog/", data=body + b" ", content_type="application/json",
                           headers={k: v for k, v in headers.items() if k != "Content-Type"})
    assert tampered.status_code == 400


def test_an_api_request_runs_a_pull_and_reports_its_progress(catalog, api, drain):
    response = api.post("/api/syncs/catalog/", {"connection": "catalog"}, format="json")
    assert response.status_code == 202
    drain()
    detail = api.get(f"/api/syncs/{response.json()['id']}/").json()
    assert detail["status"] == "succeeded" and detail["counts"]["new_versions"] == 22


def test_a_queued_run_is_run_once(catalog):
    run = catalog_pull_request(Connection.objects.get(name="catalog"), trigger="api")
    from integration_hub.workflows.catalog_pull import catalog_pull_run

    assert catalog_pull_run(run.pk).status == "succeeded"
    assert catalog_pull_run(run.pk) is None


def test_the_api_lists_drafts_and_a_decision_needs_the_permission(catalog, api, admin_user, django_user_model):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    pull()
    drafts = api.get("/api/catalog/versions/").json()
    product = next(v for v in drafts if v["kind"] == "product" and v["owner"] == "PRO")
    clerk = django_user_model.objects.create_user("clerk")
    clerk_api = APIClient()
    clerk_api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=clerk).key}")
    assert clerk_api.post(f"/api/catalog/versions/product/{product['id']}/approve/").status_code == 403
    assert api.post(f"/api/catalog/versions/product/{product['id']}/reject/").status_code == 409  # no reason
    approved = api.post(f"/api/catalog/versions/product/{product['id']}/approve/").json()
    assert (approved["status"], approved["decided_by"]) == ("approved", admin_user.username)
    assert api.get("/api/catalog/prices/pro-monthly-usd/released/").status_code == 404  # nothing released yet
