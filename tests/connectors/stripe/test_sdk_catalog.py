"""The Stripe API sandbox's catalog endpoints driven by Stripe's own SDK: products
with your own id, immutable prices (lookup-key transfer, archive, tiers with
expand), billing meters and the subscriptions list filtered by price."""

import pytest
import stripe

from connectors.stripe.api_sandbox import StripeApiSandbox

API_KEY = "sk_test_sdk"


@pytest.fixture
def sandbox():
    served = StripeApiSandbox(api_key=API_KEY)
    served.serve()
    yield served
    served.stop()


@pytest.fixture
def v1(sandbox):
    return stripe.StripeClient(API_KEY, base_addresses={"api": sandbox.url}, max_network_retries=0).v1


def product(v1, sku="PRO"):
    return v1.products.create(params={"id": sku, "name": "Pro", "metadata": {"hub_sku": sku}})


def test_a_product_is_created_with_the_sku_as_its_id_and_a_second_create_is_refused(v1):
    created = product(v1)
    assert isinstance(created, stripe.Product) and created.id == "PRO" and created.active is True
    with pytest.raises(stripe.InvalidRequestError) as refused:
        product(v1)
    assert refused.value.code == "resource_already_exists"
    assert v1.products.retrieve("PRO").metadata["hub_sku"] == "PRO"
    archived = v1.products.update("PRO", params={"active": False, "description": "gone"})
    assert (archived.active, archived.description) == (False, "gone")
    assert [p.id for p in v1.products.list(params={"active": False}).data] == ["PRO"]


def test_a_zero_decimal_price_and_a_tiered_price_with_expanded_tiers(v1):
    product(v1)
    jpy = v1.prices.create(params={"product": "PRO", "currency": "jpy", "unit_amount": 15000,
                                   "recurring": {"interval": "month"}, "lookup_key": "pro-monthly-jpy"})
    assert isinstance(jpy, stripe.Price) and (jpy.unit_amount, jpy.currency, jpy.type) == (15000, "jpy", "recurring")
    tiered = v1.prices.create(params={
        "product": "PRO", "currency": "usd", "billing_scheme": "tiered", "tiers_mode": "volume",
        "tiers": [{"up_to": 10, "unit_amount": 500}, {"up_to": "inf", "unit_amount": 300, "flat_amount": 2000}],
        "recurring": {"interval": "month"}})
    assert tiered.unit_amount is None and "tiers" not in tiered
    expanded = v1.prices.retrieve(tiered.id, params={"expand": ["tiers"]})
    assert [(t.up_to, t.unit_amount, t.flat_amount) for t in expanded.tiers] == [(10, 500, None), (None, 300, 2000)]
    listed = v1.prices.list(params={"product": "PRO", "expand": ["data.tiers"]})
    assert {p.id for p in listed.data} == {jpy.id, tiered.id}
    assert next(p for p in listed.data if p.id == tiered.id).tiers[0].up_to == 10


def test_a_metered_price_needs_a_meter(v1):
    product(v1)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        v1.prices.create(params={"product": "PRO", "currency": "usd", "unit_amount": 1,
                                 "recurring": {"interval": "month", "usage_type": "metered"}})
    assert refused.value.param == "recurring[meter]"
    meter = v1.billing.meters.create(params={"display_name": "API calls", "event_name": "api_call",
                                             "default_aggregation": {"formula": "sum"}})
    assert meter.id.startswith("mtr_") and [m.event_name for m in v1.billing.meters.list().data] == ["api_call"]
    price = v1.prices.create(params={"product": "PRO", "currency": "usd", "unit_amount": 1,
                                     "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id}})
    assert (price.recurring.usage_type, price.recurring.meter) == ("metered", meter.id)


def test_repricing_is_a_new_price_the_lookup_key_moves_and_the_old_one_is_archived(v1, sandbox):
    product(v1)
    old = v1.prices.create(params={"product": "PRO", "currency": "usd", "unit_amount": 9900,
                                   "recurring": {"interval": "month"}, "lookup_key": "pro-monthly-usd"})
    with pytest.raises(stripe.InvalidRequestError) as taken:
        v1.prices.create(params={"product": "PRO", "currency": "usd", "unit_amount": 10900,
                                 "recurring": {"interval": "month"}, "lookup_key": "pro-monthly-usd"})
    assert taken.value.code == "lookup_key_exists"
    new = v1.prices.create(params={"product": "PRO", "currency": "usd", "unit_amount": 10900,
                                   "recurring": {"interval": "month"}, "lookup_key": "pro-monthly-usd",
                                   "transfer_lookup_key": True}, options={"idempotency_key": "k1"})
    assert [p.id for p in v1.prices.list(params={"lookup_keys": ["pro-monthly-usd"]}).data] == [new.id]
    v1.products.update("PRO", params={"default_price": new.id})
    with pytest.raises(stripe.InvalidRequestError):
        v1.prices.update(new.id, params={"active": False})  # the default price cannot be archived
    with pytest.raises(stripe.InvalidRequestError) as immutable:
        v1.prices.update(old.id, params={"unit_amount": 1})
    assert immutable.value.code == "parameter_unknown"
    archived = v1.prices.update(old.id, params={"active": False})
    assert (archived.active, archived.lookup_key) == (False, None)
    assert [p.id for p in v1.prices.list(params={"product": "PRO"}).data] == [new.id]  # active only by default
    assert [p.id for p in v1.prices.list(params={"product": "PRO", "active": False}).data] == [old.id]


def test_subscriptions_are_listed_by_price_and_status(v1, sandbox):
    product(v1)
    price = v1.prices.create(params={"product": "PRO", "currency": "usd", "unit_amount": 9900,
                                     "recurring": {"interval": "month"}})
    sandbox.catalog.subscription_add(price.id)
    sandbox.catalog.subscription_add(price.id, status="canceled")
    active = v1.subscriptions.list(params={"price": price.id, "status": "active"})
    assert len(active.data) == 1 and active.data[0].items.data[0].price.id == price.id
