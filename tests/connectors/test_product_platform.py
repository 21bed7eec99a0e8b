"""The product-platform connector: the JMESPath mapping (pure), the paged client
against the sandbox over HTTP (cursor and page styles, bearer and API key), the
webhook signature, and the admin's mapping preview."""

from __future__ import annotations

import json
import time

import pytest

from connectors.errors import InvalidSignature, NeedsConfiguration
from connectors.product_platform import mapping
from connectors.product_platform.client import PlatformClient
from connectors.product_platform.sandbox import ProductPlatformSandbox, default_catalog
from connectors.product_platform.webhooks import CatalogWebhookReceiver, signature_header, verify_signature


@pytest.fixture
def platform():
    sandbox = ProductPlatformSandbox()
    sandbox.serve()
    yield sandbox
    sandbox.stop()


def items(client):
    return [item["sku"] for _, page in client.pages(updated_since=None) for item in page]


def test_the_default_mapping_reads_regional_zero_decimal_and_tiered_prices():
    compiled = mapping.mapping_compile(None)
    catalog = {item["sku"]: mapping.item_map(compiled, item, system="pp") for item in default_catalog()}
    pro = {p.source.external_id: p for p in catalog["PRO"].prices}
    assert (pro["pro-monthly-jpy"].currency, pro["pro-monthly-jpy"].unit_amount) == ("JPY", 15000)
    assert (pro["pro-monthly-eur"].unit_amount, pro["pro-monthly-eur"].list_price) == (9200, True)
    assert pro["pro-yearly-usd"].interval == "year" and not pro["pro-yearly-usd"].list_price
    api = catalog["ADDON-API-CALLS"].prices[0]
    assert (api.billing_scheme, api.tiers_mode, api.usage_type, api.meter_event_name) == (
        "tiered", "graduated", "metered", "api_call")
    assert [(t.up_to, t.unit_amount) for t in api.tiers] == [(10000, 0), (100000, 2), (None, 1)]
    storage = catalog["ADDON-STORAGE"].prices[0]
    assert storage.tiers[-1].flat_amount == 2000
    assert catalog["LEGACY-BASIC"].product.active is False


def test_a_mapping_override_with_minor_units_and_literals():
    spec = {"product": {"display_name": "title", "category": "'plan'"}, "price": {"amount": "cents"},
            "amount_format": "minor"}
    item = {"sku": "X1", "title": "Thing", "prices": [{"id": "x1", "currency": "KWD", "cents": 1234,
                                                       "recurring": {"interval": "month"}}]}
    mapped = mapping.item_map(mapping.mapping_compile(spec), item, system="pp")
    assert (mapped.product.display_name, mapped.product.category) == ("Thing", "plan")
    assert (mapped.prices[0].unit_amount, mapped.prices[0].currency) == (1234, "KWD")


@pytest.mark.parametrize(("spec", "message"), [
    ({"product": {"colour": "c"}}, r"unknown field\(s\) colour"),
    ({"product": {"sku": "sku[?"}}, "is not valid JMESPath"),
    ({"product": {"sku": ""}}, "mapping.product.sku is required"),
    ({"amount_format": "cents"}, "amount_format must be one of"),
])
def test_a_wrong_mapping_is_refused_naming_the_entry(spec, message):
    with pytest.raises(mapping.MappingConfigError, match=message):
        mapping.mapping_compile(spec)


def test_the_preview_shows_the_result_or_the_error():
    good = mapping.mapping_preview(None, default_catalog()[0])
    assert good["ok"] and good["product"]["sku"] == "STARTER" and len(good["prices"]) == 4
    bad = mapping.mapping_preview(None, {"sku": "S", "name": "n", "prices": [{"id": "p", "currency": "usd"}]})
    assert bad == {"ok": False, "error": "sample (SKU S) price 1 (p): field price.amount (expression "
                                         "'unit_amount'): is missing"}


def test_cursor_and_page_paging_with_bearer_and_api_key(platform):
    bearer = PlatformClient(platform.url, auth={"type": "bearer"}, credentials={"token": platform.token},
                            paging={"limit": 4})
    by_cursor = items(bearer)
    assert len(by_cursor) == 6 and len(platform.requests) == 2
    keyed = PlatformClient(platform.url, auth={"type": "api_key"}, credentials={"api_key": platform.api_key},
                           paging={"style": "page", "limit": 4})
    assert items(keyed) == by_cursor
    assert [query.get("page") for _, query in platform.requests[2:]] == ["1", "2"]


def test_updated_since_reads_only_later_changes(platform):
    client = PlatformClient(platform.url, auth={}, credentials={"token": platform.token})
    platform.item_rename("PRO", "Pro 2")
    since = mapping.parse_datetime(platform.items["PRO"]["updated_at"])
    assert [item["sku"] for _, page in client.pages(updated_since=since) for item in page] == ["PRO"]


def test_a_wrong_token_needs_configuration(platform):
    client = PlatformClient(platform.url, auth={}, credentials={"token": "wrong"})
    with pytest.raises(NeedsConfiguration):
        items(client)
    with pytest.raises(NeedsConfiguration, match="no credentials.token"):
        PlatformClient(platform.url, auth={}, credentials={})


def test_the_webhook_signature_accepts_old_and_new_secrets_and_refuses_tampering():
    body = json.dumps({"id": "evt_1", "type": "catalog.changed", "data": {"skus": ["PRO"]}}).encode()
    header = signature_header(body, ["old", "new"])
    verify_signature(body, header, ["new"])
    with pytest.raises(InvalidSignature):
        verify_signature(body + b" ", header, ["new"])
    with pytest.raises(InvalidSignature, match="tolerance"):
        verify_signature(body, signature_header(body, ["new"], timestamp=int(time.time()) - 600), ["new"])
    [event] = CatalogWebhookReceiver().parse(body)
    assert (event.external_id, event.type, event.subject) == ("evt_1", "catalog.changed", "catalog:changed")


def test_the_admin_refuses_a_mapping_that_fails_on_the_sample(db):
    from connectors.admin import ConnectionForm

    sample = json.dumps({"sku": "S", "name": "n", "prices": [{"id": "p", "currency": "usd", "unit_amount": "-1"}]})
    form = ConnectionForm(data={"name": "pp", "vendor": "product_platform", "role": "product", "is_active": True,
                                "config": json.dumps({"url": "http://x"}), "sample_record": sample})
    assert not form.is_valid() and "is negative" in str(form.errors["config"])
    fixed = {"url": "http://x", "mapping": {"price": {"amount": "abs(to_number(unit_amount))"}}}
    form = ConnectionForm(data={"name": "pp", "vendor": "product_platform", "role": "product", "is_active": True,
                                "config": json.dumps(fixed), "sample_record": sample})
    assert form.is_valid(), form.errors
    assert form.preview["prices"][0]["unit_amount"] == 100
