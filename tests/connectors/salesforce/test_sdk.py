"""The Salesforce sandbox driven by simple-salesforce, over real HTTP.

simple-salesforce is the independent check that the sandbox speaks the REST API's
wire format: ``/query/`` with its trailing slash, ``nextRecordsUrl`` pages,
sObject reads, PATCH (204), external-id look-ups, and error bodies that the SDK
maps to its own exceptions. Every endpoint the sandbox serves is exercised here.
"""

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from connectors.salesforce.mapping import ERP_ID_FIELD
from connectors.salesforce.sandbox import SalesforceSandbox

TOKEN = "00Dsdk!token"


class _PlainHttp(requests.adapters.HTTPAdapter):
    """simple-salesforce always builds https:// URLs; the sandbox serves plain HTTP on 127.0.0.1."""

    def send(self, request, **kwargs):
        request.url = "http://" + request.url.removeprefix("https://")
        return super().send(request, **kwargs)


@pytest.fixture
def org():
    sandbox = SalesforceSandbox(access_token=TOKEN, page_size=2)
    sandbox.serve()
    yield sandbox
    sandbox.stop()


def sdk(org, token=TOKEN):
    session = requests.Session()
    session.mount("https://", _PlainHttp())
    return Salesforce(instance_url=org.url, session_id=token, version="60.0", session=session)


@pytest.fixture
def sf(org):
    return sdk(org)


def test_query_sends_the_trailing_slash_and_gets_the_documented_shape(sf, org):
    acme = org.account_create("Acme GmbH", BillingCountry="DE")
    result = sf.query("SELECT Id, Name, BillingCountry FROM Account")
    assert ("GET", "/services/data/v60.0/query/") in org.requests
    assert (result["totalSize"], result["done"]) == (1, True) and "nextRecordsUrl" not in result
    [record] = result["records"]
    assert record["attributes"] == {"type": "Account", "url": f"/services/data/v60.0/sobjects/Account/{acme['Id']}"}
    assert (record["Id"], record["Name"], record["BillingCountry"]) == (acme["Id"], "Acme GmbH", "DE")
    assert set(record) == {"attributes", "Id", "Name", "BillingCountry"}


def test_query_all_follows_next_records_url_across_pages(sf, org):
    ids = [org.account_create(f"Account {n}")["Id"] for n in range(5)]
    first = sf.query("SELECT Id FROM Account")
    assert (first["totalSize"], first["done"], len(first["records"])) == (5, False, 2)
    assert first["nextRecordsUrl"].startswith("/services/data/v60.0/query/01g")
    assert [r["Id"] for r in sf.query_all_iter("SELECT Id FROM Account")] == ids
    assert sf.query_all("SELECT Id FROM Account ORDER BY LastModifiedDate ASC")["totalSize"] == 5


def test_query_filters_on_last_modified_date(sf, org):
    org.account_create("Old")
    later = org.account_create("New")
    since = later["LastModifiedDate"].replace("+0000", "Z")
    result = sf.query_all(f"SELECT Id FROM Account WHERE LastModifiedDate >= {since}")
    assert [r["Id"] for r in result["records"]] == [later["Id"]]


@pytest.mark.parametrize(("soql", "code"), [("SELECT Id FROM Contact", "MALFORMED_QUERY"),
                                            ("SELECT Nope__c FROM Account", "INVALID_FIELD")])
def test_a_bad_query_is_a_malformed_request(sf, soql, code):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query(soql)
    assert raised.value.status == 400 and raised.value.content[0]["errorCode"] == code


def test_a_spent_query_locator_is_refused(sf, org):
    for n in range(3):
        org.account_create(f"Account {n}")
    locator = sf.query("SELECT Id FROM Account")["nextRecordsUrl"]
    sf.query_more(locator, identifier_is_url=True)
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query_more(locator, identifier_is_url=True)
    assert raised.value.content[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_get_a_record_with_all_fields_or_the_chosen_ones(sf, org):
    acme = org.account_create("Acme GmbH", BillingCity="Berlin")
    record = sf.Account.get(acme["Id"])
    assert record["Name"] == "Acme GmbH" and record["BillingCity"] == "Berlin" and ERP_ID_FIELD in record
    chosen = sf.Account.get(acme["Id"], params={"fields": f"Id,{ERP_ID_FIELD}"})
    assert set(chosen) == {"attributes", "Id", ERP_ID_FIELD}
    with pytest.raises(SalesforceMalformedRequest):
        sf.Account.get(acme["Id"], params={"fields": "Id,Nope__c"})


def test_get_an_unknown_record_is_not_found(sf):
    with pytest.raises(SalesforceResourceNotFound) as raised:
        sf.Account.get("001000000000000AAA")
    assert raised.value.status == 404 and raised.value.content[0]["errorCode"] == "NOT_FOUND"


def test_update_patches_answers_204_and_emits_a_change_event(sf, org):
    acme = org.account_create("Acme GmbH")
    assert sf.Account.update(acme["Id"], {ERP_ID_FIELD: "ERP-7"}) == 204
    assert org.accounts[acme["Id"]][ERP_ID_FIELD] == "ERP-7"
    assert org.write_backs == [(acme["Id"], ERP_ID_FIELD, "ERP-7")]
    assert org.last_event(acme["Id"])["data"]["payload"]["ChangeEventHeader"]["changedFields"] == [
        ERP_ID_FIELD, "LastModifiedDate"]


def test_update_refuses_unknown_and_read_only_fields_and_unknown_records(sf, org):
    acme = org.account_create("Acme GmbH")
    for field in ("Nope__c", "LastModifiedDate"):
        with pytest.raises(SalesforceMalformedRequest) as raised:
            sf.Account.update(acme["Id"], {field: "x"})
        assert raised.value.content[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.update("001000000000000AAA", {"Name": "x"})
    assert org.write_backs == []


def test_get_by_custom_id_finds_the_record_by_its_external_id(sf, org):
    org.account_create("Other", **{ERP_ID_FIELD: "ERP-1"})
    acme = org.account_create("Acme GmbH", **{ERP_ID_FIELD: "ERP-7"})
    record = sf.Account.get_by_custom_id(ERP_ID_FIELD, "ERP-7")
    assert (record["Id"], record["Name"], record["attributes"]["type"]) == (acme["Id"], "Acme GmbH", "Account")
    assert ("GET", f"/services/data/v60.0/sobjects/Account/{ERP_ID_FIELD}/ERP-7") in org.requests


def test_get_by_custom_id_without_a_match_or_on_a_plain_field_is_not_found(sf, org):
    org.account_create("Acme GmbH", **{ERP_ID_FIELD: "ERP-7"})
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.get_by_custom_id(ERP_ID_FIELD, "ERP-8")
    with pytest.raises(SalesforceResourceNotFound) as raised:
        sf.Account.get_by_custom_id("Name", "Acme GmbH")
    assert "external ID field" in raised.value.content[0]["message"]


def test_get_by_custom_id_matching_several_records_is_300_with_their_urls(sf, org):
    ids = [org.account_create(name, **{ERP_ID_FIELD: "ERP-7"})["Id"] for name in ("A", "B")]
    with pytest.raises(SalesforceMoreThanOneRecord) as raised:
        sf.Account.get_by_custom_id(ERP_ID_FIELD, "ERP-7")
    assert raised.value.status == 300
    assert raised.value.content == [f"/services/data/v60.0/sobjects/Account/{i}" for i in ids]


def test_a_wrong_token_is_an_expired_session(org):
    with pytest.raises(SalesforceExpiredSession) as raised:
        sdk(org, token="00Dsdk!wrong").query("SELECT Id FROM Account")
    assert raised.value.content[0]["errorCode"] == "INVALID_SESSION_ID"


@pytest.mark.parametrize(("status", "code", "error"), [(403, "REQUEST_LIMIT_EXCEEDED", SalesforceRefusedRequest),
                                                       (503, "SERVER_UNAVAILABLE", SalesforceGeneralError)])
def test_injected_faults_reach_the_sdk_as_its_error_classes(sf, org, status, code, error):
    org.fail_next(status, code=code)
    with pytest.raises(error) as raised:
        sf.query("SELECT Id FROM Account")
    assert raised.value.status == status and raised.value.content[0]["errorCode"] == code
    assert sf.query("SELECT Id FROM Account")["done"] is True  # the fault was one answer only


def test_opportunities_and_their_line_items(sf, org):
    account = org.account_create("Acme GmbH")
    won = org.opportunity_create(account["Id"], "Acme – Pro", lines=[
        {"ProductCode": "PRO", "Quantity": 5, "Hub_Price_Ref__c": "pro-monthly-eur"}])
    record = sf.Opportunity.get(won["Id"])
    assert (record["AccountId"], record["StageName"], record["IsWon"]) == (account["Id"], "Prospecting", False)
    assert sf.Opportunity.update(won["Id"], {"StageName": "Closed Won"}) == 204
    assert org.opportunities[won["Id"]]["IsWon"] is True
    assert org.last_event(won["Id"])["channel"] == "/data/OpportunityChangeEvent"
    lines = sf.query(f"SELECT Id, Quantity, ProductCode, Hub_Price_Ref__c FROM OpportunityLineItem "
                     f"WHERE OpportunityId = '{won['Id']}' ORDER BY Id")
    assert [(r["ProductCode"], r["Quantity"]) for r in lines["records"]] == [("PRO", 5)]
    with pytest.raises(SalesforceMalformedRequest):
        sf.Opportunity.update(won["Id"], {"IsWon": False})
    with pytest.raises(SalesforceResourceNotFound):
        sf.Opportunity.get("006000000000000AAA")
