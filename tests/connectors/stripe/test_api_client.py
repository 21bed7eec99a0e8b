"""Stripe's customer API: form encoding, Idempotency-Key, errors, the connector's upsert."""

import httpx
import pytest

from canonical.contracts import Address, CustomerV1, SourceRef
from connectors.errors import NeedsConfiguration, Permanent, RateLimited, Retryable
from connectors.stripe.api_sandbox import StripeApiSandbox
from connectors.stripe.client import StripeApiClient, error_from_response, form_encode
from connectors.stripe.connector import StripeConnector


@pytest.fixture
def stripe_api():
    sandbox = StripeApiSandbox(api_key="sk_test_1")
    sandbox.serve()
    yield sandbox
    sandbox.stop()


def customer(name="Acme GmbH", canonical_id=7):
    return CustomerV1(source=SourceRef(system="salesforce", external_id="001A"), canonical_id=canonical_id,
                      display_name=name, address=Address(city="Berlin", country="DE"))


def test_nested_parameters_use_stripe_form_encoding():
    assert form_encode({"name": "A", "metadata": {"hub_id": "7"}, "address": {"city": None}}) == [
        ("name", "A"), ("metadata[hub_id]", "7")]


def test_create_then_update_with_the_hub_id_in_metadata(stripe_api):
    connector = StripeConnector(config=stripe_api.connection_config(), credentials={"api_key": "sk_test_1"})
    created = connector.upsert_customer(customer(), idempotency_key="k1")
    [stored] = stripe_api.customers_with_hub_id(7)
    assert stored["id"] == created.external_id and stored["address"]["country"] == "DE"
    connector.upsert_customer(customer("Acme AG"), idempotency_key="k2", external_id=created.external_id)
    assert stripe_api.customers[created.external_id]["name"] == "Acme AG"


def test_a_retried_create_with_the_same_key_creates_one_customer(stripe_api):
    connector = StripeConnector(config=stripe_api.connection_config(), credentials={"api_key": "sk_test_1"})
    first = connector.upsert_customer(customer(), idempotency_key="same")
    again = connector.upsert_customer(customer(), idempotency_key="same")
    assert first.external_id == again.external_id and len(stripe_api.customers) == 1


def test_the_same_key_with_other_parameters_is_permanent(stripe_api):
    connector = StripeConnector(config=stripe_api.connection_config(), credentials={"api_key": "sk_test_1"})
    connector.upsert_customer(customer(), idempotency_key="same")
    with pytest.raises(Permanent, match="idempotency_error"):
        connector.upsert_customer(customer("Other"), idempotency_key="same")


def test_a_5xx_is_retryable_and_not_replayed_under_the_key(stripe_api):
    connector = StripeConnector(config=stripe_api.connection_config(), credentials={"api_key": "sk_test_1"})
    stripe_api.fail_next(500)
    with pytest.raises(Retryable):
        connector.upsert_customer(customer(), idempotency_key="k")
    assert connector.upsert_customer(customer(), idempotency_key="k").external_id.startswith("cus_")


def test_a_missing_or_wrong_key_needs_configuration(stripe_api):
    with pytest.raises(NeedsConfiguration):
        StripeConnector(config=stripe_api.connection_config(), credentials={}).upsert_customer(
            customer(), idempotency_key="k")
    with pytest.raises(NeedsConfiguration):
        StripeConnector(config=stripe_api.connection_config(), credentials={"api_key": "sk_wrong"}).upsert_customer(
            customer(), idempotency_key="k")


@pytest.mark.parametrize("status,body,expected", [
    (429, {"error": {"type": "invalid_request_error"}}, RateLimited),
    (400, {"error": {"type": "invalid_request_error", "code": "parameter_invalid"}}, Permanent),
    (409, {"error": {"type": "invalid_request_error", "code": "lock_timeout"}}, Retryable),
    (400, {"error": {"type": "idempotency_error"}}, Permanent),
    (502, {"error": {"type": "api_error"}}, Retryable),
])
def test_stripe_errors_map_to_the_hub_taxonomy(status, body, expected):
    assert type(error_from_response(httpx.Response(status, json=body), what="x")) is expected


def scripted_client(*answers):
    """A StripeApiClient over a MockTransport answering ``answers`` in order."""
    sent = []

    def handler(request):
        sent.append(request)
        answer = answers[len(sent) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return StripeApiClient("sk_test_1", base_url="https://stripe.test", transport=httpx.MockTransport(handler)), sent


def test_a_post_under_an_idempotency_key_that_times_out_has_an_unknown_outcome():
    client, sent = scripted_client(httpx.ReadTimeout("slow"))
    with pytest.raises(Retryable) as caught:
        client.request("POST", "/v1/customers", params={"name": "A"}, idempotency_key="k1", what="create customer")
    assert caught.value.outcome_unknown
    assert sent[0].headers["Idempotency-Key"] == "k1"


def test_a_post_that_was_never_sent_has_a_known_outcome():
    client, _ = scripted_client(httpx.ConnectError("refused"))
    with pytest.raises(Retryable) as caught:
        client.request("POST", "/v1/customers", params={"name": "A"}, idempotency_key="k1", what="create customer")
    assert not caught.value.outcome_unknown


@pytest.mark.parametrize("method,unknown", [("POST", True), ("GET", False)])
def test_a_5xx_leaves_only_a_posts_outcome_unknown(method, unknown):
    client, _ = scripted_client(httpx.Response(500, json={"error": {"type": "api_error"}}))
    with pytest.raises(Retryable) as caught:
        client.request(method, "/v1/customers", what="x")
    assert caught.value.outcome_unknown is unknown


def test_stripe_should_retry_makes_a_4xx_retryable_and_a_429_waits_a_second():
    response = httpx.Response(400, json={"error": {"type": "invalid_request_error"}},
                              headers={"Stripe-Should-Retry": "true"})
    assert type(error_from_response(response, what="x")) is Retryable
    assert error_from_response(httpx.Response(429, json={}), what="x").retry_after == 1.0
