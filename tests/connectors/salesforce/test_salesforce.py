"""Salesforce: Account mapping, the relay's signature, change-event parsing and
translation (echo guard), REST error mapping and query pagination."""

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
from connectors.salesforce import webhooks
from connectors.salesforce.client import SalesforceClient, error_from_response
from connectors.salesforce.connector import SalesforceConnector
from connectors.salesforce.events import translate
from connectors.salesforce.mapping import change_id, customer_from_account, parse_timestamp
from connectors.salesforce.sandbox import SalesforceSandbox

SECRET = "relay-secret"


@pytest.fixture
def org():
    sandbox = SalesforceSandbox(relay_secret=SECRET, page_size=2)
    sandbox.serve()
    yield sandbox
    sandbox.stop()


def account(**overrides):
    record = {"attributes": {"type": "Account"}, "Id": "001xx000003DGb2AAG", "Name": "Acme GmbH",
              "ParentId": None, "BillingStreet": "Hauptstr. 1\nHinterhaus", "BillingCity": "Berlin",
              "BillingPostalCode": "10115", "BillingState": None, "BillingCountry": "de",
              "CurrencyIsoCode": "eur", "Website": "https://www.acme.de", "LastModifiedDate": "2024-05-29T16:26:40.000+0000"}
    return {**record, **overrides}


class TestMapping:
    def test_an_account_maps_to_a_canonical_customer(self):
        customer = customer_from_account(account(ParentId="001xx000003PARENT"))
        assert (customer.source.system, customer.source.external_id) == ("salesforce", "001xx000003DGb2AAG")
        assert customer.display_name == "Acme GmbH" and customer.currency == "EUR"
        assert (customer.address.line1, customer.address.line2, customer.address.country) == (
            "Hauptstr. 1", "Hinterhaus", "DE")
        assert customer.domain == "https://www.acme.de"
        assert customer.parent.external_id == "001xx000003PARENT"

    def test_a_country_name_instead_of_a_code_is_refused(self):
        with pytest.raises(MappingError, match="country"):
            customer_from_account(account(BillingCountry="Germany"))

    @pytest.mark.parametrize("field,value", [("Name", None), ("Id", ""), ("CurrencyIsoCode", "XXY")])
    def test_missing_or_wrong_required_fields_are_mapping_errors(self, field, value):
        with pytest.raises(MappingError):
            customer_from_account(account(**{field: value}))

    def test_rest_and_cdc_timestamps_give_the_same_change_id(self):
        rest = parse_timestamp("2024-05-29T16:26:40.000+0000")
        cdc = parse_timestamp("2024-05-29T16:26:40.000Z")
        assert change_id("001A", rest) == change_id("001A", cdc) == "001A:2024-05-29T16:26:40.000Z"


def envelope(change_type="UPDATE", changed=("Name", "LastModifiedDate"), record_ids=("001xx000003DGb2AAG",)):
    header = {"entityName": "Account", "recordIds": list(record_ids), "changeType": change_type,
              "changedFields": list(changed), "transactionKey": "tk", "sequenceNumber": 1,
              "commitTimestamp": 1717000000000}
    return {"data": {"schema": "s", "payload": {"ChangeEventHeader": header, "Name": "Acme",
                                                 "LastModifiedDate": "2024-05-29T16:26:40.000Z"},
                     "event": {"replayId": 6}}, "channel": "/data/AccountChangeEvent"}


class TestRelaySignature:
    body = json.dumps(envelope()).encode()

    def test_a_signed_request_verifies(self):
        webhooks.verify_signature(self.body, webhooks.sign(self.body, SECRET), [SECRET])

    def test_any_of_several_secrets_verifies_during_rotation(self):
        webhooks.verify_signature(self.body, webhooks.sign(self.body, SECRET), ["old-secret", SECRET])

    def test_a_wrong_secret_is_refused(self):
        with pytest.raises(InvalidSignature, match="No signature matches"):
            webhooks.verify_signature(self.body, webhooks.sign(self.body, "other"), [SECRET])

    def test_a_tampered_body_is_refused(self):
        headers = webhooks.sign(self.body, SECRET)
        with pytest.raises(InvalidSignature):
            webhooks.verify_signature(self.body.replace(b"Acme", b"Evil"), headers, [SECRET])

    def test_a_stale_timestamp_is_refused(self):
        headers = webhooks.sign(self.body, SECRET, timestamp=int(time.time()) - 301)
        with pytest.raises(InvalidSignature, match="tolerance"):
            webhooks.verify_signature(self.body, headers, [SECRET])

    def test_missing_headers_are_refused(self):
        with pytest.raises(InvalidSignature, match="Missing"):
            webhooks.verify_signature(self.body, {}, [SECRET])


class TestChangeEvents:
    def test_one_inbox_event_per_record_id(self):
        events = webhooks.parse(json.dumps(envelope(record_ids=("001A", "001B"))).encode())
        assert [e.external_id for e in events] == ["001A:2024-05-29T16:26:40.000Z", "001B:2024-05-29T16:26:40.000Z"]
        assert [e.subject for e in events] == ["customer:001A", "customer:001B"]
        assert events[0].type == "Account.UPDATE"

    @pytest.mark.parametrize("body", [b"not json", b"[]", json.dumps({"data": {}}).encode(),
                                      json.dumps(envelope(record_ids=())).encode()])
    def test_malformed_bodies_are_refused(self, body):
        with pytest.raises(MalformedPayload):
            webhooks.parse(body)

    def test_an_update_of_hub_owned_fields_only_is_the_write_back_echo(self):
        [event] = webhooks.parse(json.dumps(envelope(changed=("ERP_Id__c", "LastModifiedDate"))).encode())
        [fact] = translate(event.type, event.payload)
        assert isinstance(fact, Ignored) and "echo" in fact.reason

    def test_a_real_update_is_a_notice_to_read_the_record(self):
        [event] = webhooks.parse(json.dumps(envelope()).encode())
        [fact] = translate(event.type, event.payload)
        assert isinstance(fact, CustomerReferenced)
        assert fact.source.external_id == "001xx000003DGb2AAG" and "Name" in fact.changed_fields

    def test_deletes_and_other_objects_are_ignored(self):
        [event] = webhooks.parse(json.dumps(envelope(change_type="DELETE")).encode())
        assert isinstance(translate(event.type, event.payload)[0], Ignored)
        assert isinstance(translate("Contact.UPDATE", {"recordId": "003A"})[0], Ignored)

    def test_a_pulled_record_is_a_full_snapshot(self):
        [fact] = translate("Account.pulled", account())
        assert isinstance(fact, CustomerSnapshot) and fact.customer.display_name == "Acme GmbH"


def response(status, body, headers=None):
    return httpx.Response(status, json=body, headers=headers or {})


class TestErrorMapping:
    @pytest.mark.parametrize("status,code,expected", [
        (403, "REQUEST_LIMIT_EXCEEDED", RateLimited),
        (401, "INVALID_SESSION_ID", NeedsConfiguration),
        (403, "INSUFFICIENT_ACCESS", NeedsConfiguration),
        (400, "INVALID_FIELD", NeedsConfiguration),
        (400, "UNABLE_TO_LOCK_ROW", Retryable),
        (400, "FIELD_CUSTOM_VALIDATION_EXCEPTION", Permanent),
        (404, "NOT_FOUND", Permanent),
        (503, "SERVER_UNAVAILABLE", Retryable),
        (500, "UNKNOWN_EXCEPTION", Retryable),
        (429, "", RateLimited),
    ])
    def test_salesforce_errors_map_to_the_hub_taxonomy(self, status, code, expected):
        error = error_from_response(response(status, [{"message": "m", "errorCode": code}]), what="x")
        assert type(error) is expected and error.http_status == status

    def test_a_request_limit_waits_at_least_a_minute_or_the_retry_after(self):
        error = error_from_response(response(403, [{"message": "m", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]),
                                    what="x")
        assert error.retry_after == 60
        error = error_from_response(response(429, [], {"Retry-After": "7"}), what="x")
        assert error.retry_after == 7

    def test_a_non_json_error_body_still_maps(self):
        assert isinstance(error_from_response(httpx.Response(502, text="<html>"), what="x"), Retryable)


class TestOutcomeUnknown:
    def client(self, answer):
        def handler(request):
            if isinstance(answer, Exception):
                raise answer
            return answer

        return SalesforceClient("https://org.test", "token", transport=httpx.MockTransport(handler))

    @pytest.mark.parametrize("answer", [httpx.ReadTimeout("slow"), response(503, [{"errorCode": "SERVER_UNAVAILABLE"}])])
    def test_an_update_that_may_have_landed_has_an_unknown_outcome(self, answer):
        with pytest.raises(Retryable) as caught:
            self.client(answer).update("Account", "001A", {"ERP_Id__c": "42"})
        assert caught.value.outcome_unknown

    @pytest.mark.parametrize("answer", [httpx.ReadTimeout("slow"), response(503, [{"errorCode": "SERVER_UNAVAILABLE"}])])
    def test_a_read_has_a_known_outcome(self, answer):
        with pytest.raises(Retryable) as caught:
            self.client(answer).get("Account", "001A", ["Id"])
        assert not caught.value.outcome_unknown

    def test_a_lock_error_on_an_update_was_not_applied(self):
        with pytest.raises(Retryable) as caught:
            self.client(response(400, [{"errorCode": "UNABLE_TO_LOCK_ROW"}])).update("Account", "001A", {})
        assert not caught.value.outcome_unknown


class TestConnectorAgainstTheSandbox:
    def connector(self, org, **credentials):
        return SalesforceConnector(config=org.connection_config(), credentials={**org.credentials(), **credentials})

    def test_a_pull_follows_next_records_url_across_pages(self, org):
        ids = [org.account_create(f"Account {n}", BillingCountry="US")["Id"] for n in range(5)]
        pulled = list(self.connector(org).customers_changed_since(None))
        assert [e.subject for e in pulled] == [f"customer:{i}" for i in ids]
        assert sum(1 for method, path in org.requests if "/query" in path) == 3  # 2 + 2 + 1

    def test_a_pull_since_a_watermark_reads_only_later_changes(self, org):
        old = org.account_create("Old", BillingCountry="US")
        org.accounts[old["Id"]]["LastModifiedDate"] = "2020-01-01T00:00:00.000+0000"
        newer = org.account_create("New", BillingCountry="US")
        since = parse_timestamp(newer["LastModifiedDate"])
        assert [e.subject for e in self.connector(org).customers_changed_since(since)] == [f"customer:{newer['Id']}"]

    def test_write_back_patches_once_and_is_a_no_op_when_already_set(self, org):
        record = org.account_create("Acme", BillingCountry="US")
        connector = self.connector(org)
        connector.write_back_erp_id(record["Id"], "42", idempotency_key="k")
        connector.write_back_erp_id(record["Id"], "42", idempotency_key="k")
        assert org.write_backs == [(record["Id"], "ERP_Id__c", "42")]

    def test_write_back_to_a_deleted_account_is_permanent(self, org):
        with pytest.raises(Permanent, match="no longer exists"):
            self.connector(org).write_back_erp_id("001000000000000AAA", "42", idempotency_key="k")

    def test_an_expired_token_needs_configuration(self, org):
        with pytest.raises(NeedsConfiguration, match="INVALID_SESSION_ID"):
            self.connector(org, access_token="expired").fetch_customer("001000000000000AAA")

    def test_an_injected_limit_error_is_rate_limited(self, org):
        record = org.account_create("Acme", BillingCountry="US")
        org.fail_next(403, code="REQUEST_LIMIT_EXCEEDED")
        with pytest.raises(RateLimited):
            self.connector(org).fetch_customer(record["Id"])
        assert self.connector(org).fetch_customer(record["Id"]).display_name == "Acme"

    def test_a_missing_account_reads_as_none(self, org):
        assert self.connector(org).fetch_customer("001000000000000AAA") is None
