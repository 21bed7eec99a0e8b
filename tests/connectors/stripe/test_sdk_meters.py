"""Billing meters, meter events (v1 and the v2 stream) and summaries in the API sandbox,
driven by Stripe's SDK: the independent check of paths, encodings and answers."""

import time

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
def client(sandbox):
    return stripe.StripeClient(API_KEY, base_addresses={"api": sandbox.url, "meter_events": sandbox.url},
                               max_network_retries=0)


@pytest.fixture
def customer(client):
    return client.v1.customers.create(params={"name": "Acme"}).id


@pytest.fixture
def meter(client):
    return client.v1.billing.meters.create(params={
        "display_name": "API calls", "event_name": "api_calls", "default_aggregation": {"formula": "sum"},
        "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
        "value_settings": {"event_payload_key": "value"},
    })


def minute(seconds: float) -> int:
    return int(seconds) // 60 * 60


def test_a_meter_is_created_listed_and_retrieved(client, meter):
    assert isinstance(meter, stripe.billing.Meter) and meter.id.startswith("mtr_")
    assert (meter.event_name, meter.default_aggregation.formula, meter.status) == ("api_calls", "sum", "active")
    assert [m.id for m in client.v1.billing.meters.list(params={"status": "active"}).auto_paging_iter()] == [meter.id]
    assert client.v1.billing.meters.retrieve(meter.id).value_settings.event_payload_key == "value"


def test_a_second_meter_for_the_same_event_name_is_refused(client, meter):
    with pytest.raises(stripe.InvalidRequestError, match="already exists"):
        client.v1.billing.meters.create(params={"display_name": "again", "event_name": "api_calls",
                                                "default_aggregation": {"formula": "sum"}})


def test_v1_events_are_summed_by_the_event_summaries(client, sandbox, meter, customer):
    now = int(time.time())
    for identifier, value in (("ev-1", "12.5"), ("ev-2", "7.5")):
        created = client.v1.billing.meter_events.create(params={
            "event_name": "api_calls", "identifier": identifier, "timestamp": now - 120,
            "payload": {"stripe_customer_id": customer, "value": value},
        })
        assert isinstance(created, stripe.billing.MeterEvent) and created.identifier == identifier
    summaries = client.v1.billing.meters.event_summaries.list(meter.id, params={
        "customer": customer, "start_time": minute(now - 3600), "end_time": minute(now) + 60})
    assert [s.aggregated_value for s in summaries.data] == [20.0]
    assert summaries.data[0].meter == meter.id


def test_a_v1_event_retried_under_its_idempotency_key_is_stored_once(client, sandbox, meter, customer):
    params = {"event_name": "api_calls", "identifier": "ev-retry", "payload": {"stripe_customer_id": customer,
                                                                            "value": "3"}}
    first = client.v1.billing.meter_events.create(params=params, options={"idempotency_key": "ev-retry"})
    again = client.v1.billing.meter_events.create(params=params, options={"idempotency_key": "ev-retry"})
    assert first.created == again.created and len(sandbox.meters.events) == 1


def test_a_repeated_identifier_without_the_key_is_refused(client, meter, customer):
    params = {"event_name": "api_calls", "identifier": "ev-x", "payload": {"stripe_customer_id": customer,
                                                                        "value": "3"}}
    client.v1.billing.meter_events.create(params=params)
    with pytest.raises(stripe.InvalidRequestError, match="already exists"):
        client.v1.billing.meter_events.create(params=params)


@pytest.mark.parametrize(("payload", "timestamp", "code"), [
    ({"stripe_customer_id": "cus_missing", "value": "1"}, 0, "meter_event_customer_not_found"),
    ({"value": "1"}, 0, "meter_event_no_customer_defined"),
    ({"stripe_customer_id": "CUSTOMER", "value": "abc"}, 0, "meter_event_invalid_value"),
    ({"stripe_customer_id": "CUSTOMER", "value": "1"}, -36 * 86400, "timestamp_too_far_in_past"),
    ({"stripe_customer_id": "CUSTOMER", "value": "1"}, 600, "timestamp_in_future"),
])
def test_v1_validation_errors_reach_the_sdk(client, meter, customer, payload, timestamp, code):
    payload = {k: customer if v == "CUSTOMER" else v for k, v in payload.items()}
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.billing.meter_events.create(params={"event_name": "api_calls", "payload": payload,
                                                      "timestamp": int(time.time()) + timestamp})
    assert (raised.value.http_status, raised.value.code) == (400, code)


def test_an_event_without_a_meter_is_refused(client, customer):
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.billing.meter_events.create(params={"event_name": "nothing",
                                                      "payload": {"stripe_customer_id": customer, "value": "1"}})
    assert raised.value.code == "no_meter"


def test_the_v2_stream_takes_100_events_per_request_with_a_session_token(client, sandbox, meter, customer):
    session = client.v2.billing.meter_event_session.create()
    assert session.authentication_token.startswith("mes_tok_") and session.expires_at
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    events = [{"event_name": "api_calls", "identifier": f"s-{n}", "timestamp": stamp,
               "payload": {"stripe_customer_id": customer, "value": "1"}} for n in range(100)]
    client.v2.billing.meter_event_stream.create(params={"events": events},
                                                options={"api_key": session.authentication_token})
    client.v2.billing.meter_event_stream.create(params={"events": events[:10]},  # repeats are dropped
                                                options={"api_key": session.authentication_token})
    assert len(sandbox.meters.events) == 100
    with pytest.raises(stripe.InvalidRequestError):
        client.v2.billing.meter_event_stream.create(params={"events": events + events[:1]},
                                                    options={"api_key": session.authentication_token})


def test_an_expired_session_is_the_sdks_temporary_session_expired_error(client, sandbox, meter, customer):
    session = client.v2.billing.meter_event_session.create()
    sandbox.meters.sessions_expire()
    with pytest.raises(stripe.TemporarySessionExpiredError):
        client.v2.billing.meter_event_stream.create(
            params={"events": [{"event_name": "api_calls", "payload": {"stripe_customer_id": customer, "value": "1"}}]},
            options={"api_key": session.authentication_token})


def test_invalid_stream_events_are_dropped_and_reported_asynchronously(client, sandbox, meter):
    session = client.v2.billing.meter_event_session.create()
    client.v2.billing.meter_event_stream.create(
        params={"events": [{"event_name": "api_calls", "identifier": "bad",
                            "payload": {"stripe_customer_id": "cus_nobody", "value": "1"}}]},
        options={"api_key": session.authentication_token})
    assert sandbox.meters.events == {}
    assert sandbox.meters.stream_errors[0]["code"] == "meter_event_customer_not_found"


def test_summaries_need_minute_aligned_times_and_group_by_day(client, meter, customer):
    with pytest.raises(stripe.InvalidRequestError, match="minute"):
        client.v1.billing.meters.event_summaries.list(meter.id, params={
            "customer": customer, "start_time": 61, "end_time": 3600})
    day = int(time.time()) // 86400 * 86400
    daily = client.v1.billing.meters.event_summaries.list(meter.id, params={
        "customer": customer, "start_time": day - 2 * 86400, "end_time": day, "value_grouping_window": "day"})
    assert [(s.start_time, s.aggregated_value) for s in daily.data] == [(day - 2 * 86400, 0.0), (day - 86400, 0.0)]
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.billing.meters.event_summaries.list("mtr_missing", params={
            "customer": customer, "start_time": 0, "end_time": 60})
    assert raised.value.code == "resource_missing"
