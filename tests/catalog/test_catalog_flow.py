"""The catalog workflow end to end in one process: platform sandbox → pull → drafts →
approval → release to the Stripe API sandbox and an in-memory ERP item master."""

from __future__ import annotations

import pytest

from canonical.models import CatalogApprovalRule, CatalogVersion, PriceVersion, Product, ProductVersion
from canonical.selectors import price_released
from connectors.models import Connection
from integration_hub.runtime.models import AuditEntry, Delivery, ExceptionRecord
from integration_hub.workflows.catalog import CatalogDecisionRefused, version_decide, versions_approve
from integration_hub.workflows.catalog_pull import catalog_pull_now

pytestmark = pytest.mark.django_db(transaction=True)
Status = CatalogVersion.Status


def pull(**kwargs):
    return catalog_pull_now(Connection.objects.get(name="catalog"), **kwargs)


def approve_all(user):
    drafts = list(ProductVersion.objects.filter(status=Status.DRAFT)) + list(
        PriceVersion.objects.filter(status=Status.DRAFT))
    return versions_approve(drafts, user=user)


def stripe_prices(stripe_api, lookup_key):
    return [p for p in stripe_api.catalog.prices.values() if p["metadata"].get("hub_price") == lookup_key]


def test_a_first_pull_creates_drafts_and_nothing_reaches_erp_or_billing(catalog, stripe_api, item_master, drain):
    run = pull()
    drain()
    assert run.status == "succeeded", run.error
    assert run.counts | {} == {"full_scan": True, "pages": 1, "items_seen": 6, "unchanged": 0,
                               "new_versions": 6 + 16, "errors": 0, "retrying": 0, "retired": 0}
    assert ProductVersion.objects.filter(status=Status.DRAFT).count() == 6
    assert PriceVersion.objects.filter(status=Status.DRAFT).count() == 16
    assert Delivery.objects.count() == 0
    assert stripe_api.catalog.products == {} and item_master.products == {}


def test_approving_releases_one_product_and_one_price_per_version(catalog, stripe_api, item_master, approver,
                                                                   drain):
    pull()
    done, skipped = approve_all(approver)
    drain()
    assert (done, skipped) == (22, [])
    assert set(stripe_api.catalog.products) == {"STARTER", "PRO", "ENTERPRISE", "ADDON-API-CALLS", "ADDON-STORAGE",
                                                "LEGACY-BASIC"}
    assert len(stripe_api.catalog.prices) == 16
    jpy = stripe_prices(stripe_api, "pro-monthly-jpy")[0]
    assert (jpy["currency"], jpy["unit_amount"], jpy["lookup_key"]) == ("jpy", 15000, "pro-monthly-jpy")
    api_calls = stripe_prices(stripe_api, "addon-api-calls-usd")[0]
    assert api_calls["recurring"]["usage_type"] == "metered" and api_calls["recurring"]["meter"].startswith("mtr_")
    assert [t["up_to"] for t in api_calls["_tiers"]] == [10000, 100000, None]
    assert stripe_api.catalog.products["PRO"]["default_price"] in {
        p["id"] for p in stripe_prices(stripe_api, "pro-monthly-usd") + stripe_prices(stripe_api, "pro-monthly-eur")
        + stripe_prices(stripe_api, "pro-monthly-jpy")}
    assert stripe_api.catalog.products["LEGACY-BASIC"]["active"] is False
    assert stripe_prices(stripe_api, "legacy-basic-monthly-usd")[0]["active"] is False
    assert item_master.products["PRO"]["name"] == "Pro"
    assert item_master.list_prices[("PRO", "JPY")] == 15000 and item_master.list_prices[("PRO", "EUR")] == 9200
    assert ProductVersion.objects.filter(status=Status.RELEASED).count() == 6
    assert PriceVersion.objects.filter(status=Status.RELEASED).count() == 16
    assert all(key for _, _, key in stripe_api.requests if _ == "POST")  # Idempotency-Key on every POST
    assert price_released("pro-monthly-eur").unit_amount == 9200
    assert AuditEntry.objects.filter(action="catalog.approve", actor=approver).count() == 22


def test_a_price_change_is_a_new_version_and_a_new_stripe_price_with_the_old_archived(
        catalog, stripe_api, platform, approver, drain):
    pull()
    approve_all(approver)
    drain()
    old = stripe_prices(stripe_api, "pro-monthly-usd")[0]
    platform.price_set("pro-monthly-usd", "109.00")
    run = pull()
    drain()
    # Incremental: the changed item, and the last one of the previous pull (at the watermark).
    assert (run.counts["items_seen"], run.counts["new_versions"], run.counts["unchanged"]) == (2, 1, 1)
    draft = PriceVersion.objects.get(price__source_id="pro-monthly-usd", status=Status.DRAFT)
    assert draft.changes == {"unit_amount": [9900, 10900]}
    assert len(stripe_prices(stripe_api, "pro-monthly-usd")) == 1  # unapproved: billing untouched
    assert price_released("pro-monthly-usd").unit_amount == 9900

    version_decide(draft, approve=True, user=approver)
    drain()
    prices = {p["id"]: p for p in stripe_prices(stripe_api, "pro-monthly-usd")}
    new = next(p for p in prices.values() if p["id"] != old["id"])
    assert (new["unit_amount"], new["active"], new["lookup_key"]) == (10900, True, "pro-monthly-usd")
    assert (prices[old["id"]]["active"], prices[old["id"]]["lookup_key"]) == (False, None)
    assert price_released("pro-monthly-usd").pk == draft.pk
    assert price_released(new["id"]).pk == draft.pk
    assert PriceVersion.objects.get(price__source_id="pro-monthly-usd", number=1).status == Status.SUPERSEDED


def test_an_unchanged_pull_makes_nothing_and_a_touch_without_change_is_unchanged(catalog, platform, drain):
    pull()
    platform.item_describe("PRO", "Advanced workflows and priority support")  # same text, new updated_at
    run = pull()
    assert (run.counts["new_versions"], run.counts["unchanged"], run.counts["items_seen"]) == (0, 2, 2)
    assert run.counts["full_scan"] is False


def test_a_person_without_the_approver_permission_cannot_decide(catalog, django_user_model):
    pull()
    clerk = django_user_model.objects.create_user("clerk")
    with pytest.raises(CatalogDecisionRefused):
        version_decide(ProductVersion.objects.first(), approve=True, user=clerk)
    assert not Delivery.objects.exists()


def test_a_price_cannot_be_approved_before_its_product(catalog, approver):
    pull()
    with pytest.raises(CatalogDecisionRefused, match="product version before its prices"):
        version_decide(PriceVersion.objects.first(), approve=True, user=approver)


def test_a_rejected_change_is_kept_with_its_reason_and_not_asked_again(catalog, platform, approver, drain):
    pull()
    approve_all(approver)
    drain()
    platform.item_rename("PRO", "Pro+")
    pull()
    draft = ProductVersion.objects.get(product__sku="PRO", status=Status.DRAFT)
    version_decide(draft, approve=False, user=approver, reason="marketing has not signed off")
    draft.refresh_from_db()
    assert (draft.status, draft.decision_reason, draft.decided_by) == (Status.REJECTED, "marketing has not signed off",
                                                                       approver)
    platform.item_describe("PRO", "Advanced workflows and priority support")  # touched, still 'Pro+'
    assert pull().counts["new_versions"] == 0
    assert Product.objects.get(sku="PRO").name == "Pro"


def test_auto_approval_rule_releases_a_name_change_only(catalog, platform, approver, stripe_api, drain):
    pull()
    approve_all(approver)
    drain()
    CatalogApprovalRule.objects.create(name="wording", applies_to="product", kind="fields_only",
                                       fields=["display_name", "description"])
    CatalogApprovalRule.objects.create(name="small price moves", applies_to="price", kind="price_change_below",
                                       percent=5)
    platform.item_rename("STARTER", "Starter (new)")
    platform.price_set("starter-monthly-usd", "30.00")  # +3.4 %
    platform.price_set("starter-monthly-eur", "35.00")  # +29.6 %: waits, and alerts
    pull()
    drain()
    assert ProductVersion.objects.get(product__sku="STARTER", number=2).status == Status.RELEASED
    assert stripe_api.catalog.products["STARTER"]["name"] == "Starter (new)"
    assert PriceVersion.objects.get(price__source_id="starter-monthly-usd", number=2).decided_by_rule == \
        "small price moves"
    assert PriceVersion.objects.get(price__source_id="starter-monthly-eur", number=2).status == Status.DRAFT
    alert = ExceptionRecord.objects.get(category="alert")
    assert "starter-monthly-eur changes by +29.63%" in alert.summary and alert.owner_team == "product_operations"
    assert "/admin/canonical/priceversion/" in alert.detail
