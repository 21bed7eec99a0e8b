"""HubSpot: signature v3 (valid, wrong secret, tampered body, stale timestamp, URI
mismatch), batch parsing, company mapping, translation (echo guard), error mapping."""

import json
import time

import httpx
import pytest

from canonical.events import CustomerReferenced, CustomerSnapshot
from connectors.base import Ignored
from connectors.errors import (
    InvalidSignature,
    MalformedPayload,
    MappingError,
    NeedsConfiguration,
    Permanent,
    RateLimited,
    Retryable,
)
from connectors.hubspot import webhooks
from connectors.hubspot.client import HubSpotClient, error_from_response
from connectors.hubspot.connector import HubSpotConnector
from connectors.hubspot.events import translate
from connectors.hubspot.mapping import customer_from_company
from connectors.hubspot.sandbox import HubSpotSandbox

SECRET = "hubspot-app-secret"
URL = "https://hub.example.com/api/webhooks/hubspot/"
BATCH = [{"eventId": 1, "subscriptionId": 12345, "portalId": 62515, "occurredAt": 1564113600000,
          "subscriptionType": "company.propertyChange", "attemptNumber": 0, "objectId": 123,
          "propertyName": "name", "propertyValue": "Acme"},
         {"eventId": 2, "subscriptionId": 12345, "portalId": 62515, "occurredAt": 1564113600001,
          "subscriptionType": "company.creation", "attemptNumber": 0, "objectId": 124}]


def signed(body: bytes, *, secret=SECRET, url=URL, method="POST", timestamp_ms=None):
    timestamp = str(int(time.time() * 1000) if timestamp_ms is None else timestamp_ms)
    return {webhooks.SIGNATURE_HEADER: webhooks.compute_signature(secret=secret, method=method, uri=url, body=body,
                                                                  timestamp=timestamp),
            webhooks.TIMESTAMP_HEADER: timestamp}


class TestSignatureV3:
    body = json.dumps(BATCH).encode()

    def verify(self, headers, *, body=None, url=URL, method="POST"):
        webhooks.verify_signature(body=body or self.body, headers=headers, secrets=[SECRET], method=method, url=url)

    def test_a_valid_signature_verifies(self):
        self.verify(signed(self.body))

    def test_header_names_are_matched_without_regard_to_case(self):
        self.verify({key.upper(): value for key, value in signed(self.body).items()})

    def test_a_wrong_secret_is_refused(self):
        with pytest.raises(InvalidSignature):
            self.verify(signed(self.body, secret="not-the-secret"))

    def test_a_tampered_body_is_refused(self):
        with pytest.raises(InvalidSignature):
            self.verify(signed(self.body), body=self.body.replace(b"Acme", b"Evil"))

    def test_a_stale_timestamp_is_refused(self):
        old = int((time.time() - 301) * 1000)
        with pytest.raises(InvalidSignature, match="older"):
            self.verify(signed(self.body, timestamp_ms=old))

    def test_a_different_uri_is_refused(self):
        with pytest.raises(InvalidSignature):
            self.verify(signed(self.body, url="https://evil.example.com/api/webhooks/hubspot/"))

    def test_a_different_method_is_refused(self):
        with pytest.raises(InvalidSignature):
            self.verify(signed(self.body), method="PUT")

    def test_hubspot_decoded_escapes_match_either_way(self):
        encoded = "https://hub.example.com/api/webhooks/hubspot/?a=b%3Ac"
        self.verify(signed(self.body, url="https://hub.example.com/api/webhooks/hubspot/?a=b:c"), url=encoded)

    def test_missing_headers_are_refused(self):
        with pytest.raises(InvalidSignature, match="Missing"):
            self.verify({})


class TestBatches:
    def test_a_batch_becomes_one_inbox_event_each(self):
        events = webhooks.parse(json.dumps(BATCH).encode())
        assert [(e.type, e.subject) for e in events] == [
            ("company.propertyChange", "customer:123"), ("company.creation", "customer:124")]
        assert len({e.external_id for e in events}) == 2

    @pytest.mark.parametrize("body", [b"{}", b"[]", b"nope", json.dumps([{"eventId": 1}]).encode()])
    def test_malformed_batches_are_refused(self, body):
        with pytest.raises(MalformedPayload):
            webhooks.parse(body)

    def test_property_changes_are_notices_and_the_write_back_echo_is_ignored(self):
        [fact] = translate("company.propertyChange", BATCH[0])
        assert isinstance(fact, CustomerReferenced) and fact.changed_fields == ("name",)
        [echo] = translate("company.propertyChange", {**BATCH[0], "propertyName": "hub_erp_id"})
        assert isinstance(echo, Ignored) and "echo" in echo.reason
        assert isinstance(translate("company.deletion", BATCH[1])[0], Ignored)


class TestMapping:
    company = {"id": "512", "properties": {"name": "Acme Inc", "domain": "acme.com", "country": "us",
                                           "city": "Boston", "zip": "02110", "address": "1 Main St",
                                           "hs_parent_company_id": "777", "hs_object_id": "512"},
               "createdAt": "2024-01-01T00:00:00Z", "updatedAt": "2024-01-02T00:00:00Z", "archived": False}

    def test_a_company_maps_to_a_canonical_customer(self):
        customer = customer_from_company(self.company)
        assert (customer.source.system, customer.source.external_id) == ("hubspot", "512")
        assert (customer.address.country, customer.address.postal_code, customer.domain) == ("US", "02110", "acme.com")
        assert customer.parent.external_id == "777"
        [fact] = translate("company.pulled", self.company)
        assert isinstance(fact, CustomerSnapshot)

    def test_a_company_without_a_name_is_a_mapping_error(self):
        with pytest.raises(MappingError, match="name"):
            customer_from_company({**self.company, "properties": {**self.company["properties"], "name": ""}})


class TestErrors:
    def test_rate_limits_wait_by_policy(self):
        body = {"status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT",
                "policyName": "SECONDLY"}
        error = error_from_response(httpx.Response(429, json=body), what="x")
        assert isinstance(error, RateLimited) and error.retry_after == 1.0
        daily = error_from_response(httpx.Response(429, json={**body, "policyName": "DAILY"}), what="x")
        assert daily.retry_after == 3600.0

    @pytest.mark.parametrize("status,category,expected", [
        (401, "INVALID_AUTHENTICATION", NeedsConfiguration), (403, "MISSING_SCOPES", NeedsConfiguration),
        (400, "PROPERTY_DOESNT_EXIST", NeedsConfiguration), (400, "VALIDATION_ERROR", Permanent),
        (404, "OBJECT_NOT_FOUND", Permanent), (502, "INTERNAL_ERROR", Retryable)])
    def test_errors_map_to_the_hub_taxonomy(self, status, category, expected):
        error = error_from_response(httpx.Response(status, json={"status": "error", "category": category,
                                                                 "message": "m"}), what="x")
        assert type(error) is expected


class TestOutcomeUnknown:
    def client(self, answer):
        def handler(request):
            if isinstance(answer, Exception):
                raise answer
            return answer

        return HubSpotClient("token", base_url="https://hubspot.test", transport=httpx.MockTransport(handler))

    @pytest.mark.parametrize("answer", [httpx.ReadTimeout("slow"), httpx.Response(502, json={"category": "X"})])
    def test_a_search_is_a_post_that_only_reads(self, answer):
        with pytest.raises(Retryable) as caught:
            list(self.client(answer).search_modified_since(None, ["name"]))
        assert not caught.value.outcome_unknown

    @pytest.mark.parametrize("answer", [httpx.ReadTimeout("slow"), httpx.Response(502, json={"category": "X"})])
    def test_an_update_that_may_have_landed_has_an_unknown_outcome(self, answer):
        with pytest.raises(Retryable) as caught:
            self.client(answer).update_company("512", {"hub_erp_id": "7"})
        assert caught.value.outcome_unknown

    def test_a_rate_limit_prefers_retry_after_over_the_policy(self):
        response = httpx.Response(429, json={"policyName": "DAILY"}, headers={"Retry-After": "5"})
        assert error_from_response(response, what="x").retry_after == 5


class TestConnectorAgainstTheSandbox:
    @pytest.fixture
    def portal(self):
        sandbox = HubSpotSandbox(client_secret=SECRET)
        sandbox.serve()
        yield sandbox
        sandbox.stop()

    def test_fetch_search_and_write_back(self, portal):
        company = portal.company_create("Acme Inc", country="US", domain="acme.com")
        connector = HubSpotConnector(config=portal.connection_config(), credentials=portal.credentials())
        assert connector.fetch_customer(company["id"]).display_name == "Acme Inc"
        assert [e.subject for e in connector.customers_changed_since(None)] == [f"customer:{company['id']}"]
        connector.write_back_erp_id(company["id"], "7", idempotency_key="k")
        connector.write_back_erp_id(company["id"], "7", idempotency_key="k")
        assert portal.write_backs == [(company["id"], "hub_erp_id", "7")]
        echo = portal.events_for(company["id"])[-1]
        assert (echo["subscriptionType"], echo["propertyName"]) == ("company.propertyChange", "hub_erp_id")

    def test_an_injected_429_is_rate_limited_then_recovers(self, portal):
        company = portal.company_create("Acme Inc", country="US")
        connector = HubSpotConnector(config=portal.connection_config(), credentials=portal.credentials())
        portal.rate_limit_next()
        with pytest.raises(RateLimited):
            connector.fetch_customer(company["id"])
        assert connector.fetch_customer(company["id"]) is not None

    def test_a_sandbox_signed_batch_verifies(self, portal):
        portal.company_create("Acme Inc", country="US")
        body, headers = portal.webhook_request(portal.events, URL)
        webhooks.verify_signature(body=body, headers=headers, secrets=[SECRET], method="POST", url=URL)
