"""The connector's meter events against the API sandbox: v2 stream and v1, session renewal,
a failure half-way through (nothing counted twice), and the summaries read back."""

import datetime as dt

import pytest

from connectors.base import MeterEvent
from connectors.errors import NeedsConfiguration, Retryable
from connectors.stripe.api_sandbox import StripeApiSandbox
from connectors.stripe.connector import StripeConnector, meter_event_stream_item


@pytest.fixture
def stripe_api():
    sandbox = StripeApiSandbox(api_key="sk_test_1")
    sandbox.serve()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def customer_id(stripe_api):
    customer = stripe_api.objects.customer("Acme", "a@example.com")
    stripe_api.customers[customer["id"]] = customer
    stripe_api.meters.route(type("R", (), {"path": "/v1/billing/meters", "method": "POST", "query": {}})(), {
        "display_name": "API calls", "event_name": "api_calls", "default_aggregation": {"formula": "sum"}})
    return customer["id"]


def connector(sandbox, api="v2"):
    return StripeConnector(config={**sandbox.connection_config(), "meter_events_api": api},
                           credentials={"api_key": "sk_test_1"})


def events(customer, n, *, value="2.5"):
    at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    return [MeterEvent("api_calls", customer, value, f"agg-{i}", at) for i in range(n)]


def window():
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    return now - dt.timedelta(hours=1), now + dt.timedelta(minutes=1)


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_events_are_sent_and_read_back_from_the_summaries(stripe_api, customer_id, api):
    hub = connector(stripe_api, api)
    assert hub.send_meter_events(events(customer_id, 4), idempotency_key="push-1").state == "sent"
    start, end = window()
    assert hub.meter_usage(event_name="api_calls", customer=customer_id, start=start, end=end) == "10"


def test_the_stream_makes_one_request_per_100_events_with_one_session(stripe_api, customer_id):
    hub = connector(stripe_api)
    hub.send_meter_events(events(customer_id, 100), idempotency_key="p")
    paths = [path for _, path, _ in stripe_api.requests]
    assert paths == ["/v2/billing/meter_event_session", "/v2/billing/meter_event_stream"]
    with pytest.raises(Exception, match="at most 100"):
        hub.send_meter_events(events(customer_id, 101), idempotency_key="p")


def test_an_expired_session_is_renewed_and_the_request_sent_again(stripe_api, customer_id):
    hub = connector(stripe_api)
    hub.send_meter_events(events(customer_id, 1), idempotency_key="a")
    stripe_api.meters.sessions_expire()
    hub.send_meter_events(events(customer_id, 3)[1:], idempotency_key="b")
    sessions = [p for _, p, _ in stripe_api.requests if p.endswith("meter_event_session")]
    assert len(sessions) == 2 and len(stripe_api.meters.events) == 3


def test_v1_failing_half_way_then_retried_counts_every_event_once(stripe_api, customer_id):
    hub = connector(stripe_api, "v1")
    batch = events(customer_id, 4)
    hub.send_meter_events(batch[:2], idempotency_key="x")  # an attempt whose worker died after two events
    stripe_api.fail_next(500)
    with pytest.raises(Retryable) as raised:
        hub.send_meter_events(batch, idempotency_key="x")
    assert raised.value.outcome_unknown
    hub.send_meter_events(batch, idempotency_key="x")  # replays 1-2 under their keys, sends 3-4
    assert sorted(stripe_api.meters.events) == ["agg-0", "agg-1", "agg-2", "agg-3"]
    start, end = window()
    assert hub.meter_usage(event_name="api_calls", customer=customer_id, start=start, end=end) == "10"


def test_a_metric_without_a_meter_needs_configuration(stripe_api, customer_id):
    start, end = window()
    with pytest.raises(NeedsConfiguration, match="no active billing meter"):
        connector(stripe_api).meter_usage(event_name="storage_gb", customer=customer_id, start=start, end=end)


def test_stream_items_carry_iso_timestamps_and_string_values():
    at = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert meter_event_stream_item(MeterEvent("m", "cus_1", "1.5", "id-1", at)) == {
        "event_name": "m", "identifier": "id-1", "timestamp": "2025-03-01T10:00:00Z",
        "payload": {"stripe_customer_id": "cus_1", "value": "1.5"}}
