"""Property-based fuzz of every webhook parser and verifier (hypothesis), time-boxed by
example count: ``BAD_INPUTS_FUZZ_EXAMPLES`` (CI runs a small number, a local
``make bad-inputs`` more). Whatever the bytes or headers, a parser either returns
events the inbox can hold or raises MalformedPayload; a verifier either passes or
raises InvalidSignature. Anything else would be a 5xx."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.errors import InvalidSignature, MalformedPayload
from connectors.hubspot.webhooks import HubSpotWebhookReceiver
from connectors.payloads import check_events
from connectors.salesforce.webhooks import SalesforceRelayReceiver
from connectors.stripe.webhooks import StripeWebhookReceiver

pytestmark = pytest.mark.badinputs

EXAMPLES = int(os.environ.get("BAD_INPUTS_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)
RECEIVERS = {"stripe": StripeWebhookReceiver(), "hubspot": HubSpotWebhookReceiver(),
             "salesforce": SalesforceRelayReceiver()}

scalars = st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30) | st.floats(
    allow_nan=False, allow_infinity=False) | st.text(max_size=40)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
    st.sampled_from(["id", "object", "type", "created", "data", "eventId", "subscriptionType", "objectId",
                     "occurredAt", "ChangeEventHeader", "payload", "recordIds", "entityName", "changeType",
                     "commitTimestamp", "LastModifiedDate", "event"]) | st.text(max_size=8), inner, max_size=6),
    max_leaves=30)


def _shaped(source: str):
    """Bodies close to the real shape, so the fuzz reaches deep into the parser."""
    if source == "stripe":
        return st.fixed_dictionaries({"id": st.just("evt_1") | st.text(max_size=300), "object": st.just("event"),
                                      "type": st.text(max_size=120), "created": scalars,
                                      "data": st.fixed_dictionaries({"object": json_values | st.fixed_dictionaries(
                                          {"id": st.text(max_size=300), "object": st.text(max_size=20)})})})
    if source == "hubspot":
        return st.lists(st.fixed_dictionaries({"eventId": scalars, "subscriptionType": scalars, "objectId": scalars,
                                               "occurredAt": scalars}), max_size=3)
    return st.fixed_dictionaries({"data": st.fixed_dictionaries({"payload": st.fixed_dictionaries({
        "ChangeEventHeader": st.fixed_dictionaries({"entityName": scalars, "changeType": scalars,
                                                    "recordIds": st.lists(st.text(max_size=300), max_size=3) | scalars,
                                                    "commitTimestamp": scalars}),
        "LastModifiedDate": scalars})})})


def _parse(source: str, body: bytes) -> None:
    try:
        events = RECEIVERS[source].parse(body)
    except MalformedPayload:
        return
    check_events(source, events)  # raises MalformedPayload (a 400) or passes: never anything else
    for event in events:
        json.dumps(dict(event.payload))  # what the inbox stores


@pytest.mark.parametrize("source", sorted(RECEIVERS))
@FUZZ
@given(body=st.binary(max_size=300))
def test_any_bytes_are_parsed_or_refused(source, body):
    _parse(source, body)


@pytest.mark.parametrize("source", sorted(RECEIVERS))
@FUZZ
@given(data=st.data())
def test_any_json_of_roughly_the_right_shape_is_parsed_or_refused(source, data):
    value = data.draw(json_values | _shaped(source))
    try:
        _parse(source, json.dumps(value).encode())
    except MalformedPayload:
        pass


@pytest.mark.parametrize("source", sorted(RECEIVERS))
@FUZZ
@given(headers=st.dictionaries(st.sampled_from([
    "Stripe-Signature", "X-HubSpot-Signature-v3", "X-HubSpot-Request-Timestamp", "X-Hub-Relay-Timestamp",
    "X-Hub-Relay-Signature"]), st.text(max_size=80) | st.from_regex(r"t=\d{1,30},v1=[0-9a-f]{0,64}", fullmatch=True)
    | st.integers(min_value=0, max_value=10**40).map(str)), body=st.binary(max_size=64))
def test_any_headers_are_verified_or_refused(source, headers, body):
    try:
        RECEIVERS[source].verify(body=body, headers=headers, secrets=["whsec_fuzz"], method="POST",
                                 url="http://testserver/api/webhooks/x/")
    except InvalidSignature:
        return
    pytest.fail("a random signature was accepted")
