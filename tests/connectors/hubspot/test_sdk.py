"""The HubSpot sandbox driven by hubspot-api-client, over real HTTP.

The SDK is the independent check that the sandbox speaks CRM v3's wire format:
repeated ``properties`` query parameters, search requests and ``paging.next.after``,
objects the SDK's models accept (ids and values as strings, ISO timestamps), and
error statuses it maps to its own exceptions. Every endpoint the sandbox serves
is exercised here.
"""

import datetime as dt
import json

import pytest
from hubspot import HubSpot
from hubspot.crm.companies import (
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObject,
    SimplePublicObjectInput,
)
from hubspot.crm.companies.exceptions import (
    ApiException,
    NotFoundException,
    ServiceException,
    UnauthorizedException,
)
from hubspot.utils.signature import Signature
from urllib3.util import Retry

from connectors.hubspot.mapping import ERP_ID_PROPERTY
from connectors.hubspot.sandbox import HubSpotSandbox

TOKEN = "pat-sdk-token"


@pytest.fixture
def portal():
    sandbox = HubSpotSandbox(access_token=TOKEN, seed=1)
    sandbox.serve()
    yield sandbox
    sandbox.stop()


def sdk(portal, token=TOKEN, retry=None):
    return HubSpot(access_token=token, host=portal.url, retry=retry).crm.companies


@pytest.fixture
def companies(portal):
    return sdk(portal)


def search(companies, *filters, groups=None, **request):
    filter_groups = groups if groups is not None else ([FilterGroup(filters=list(filters))] if filters else None)
    return companies.search_api.do_search(
        public_object_search_request=PublicObjectSearchRequest(filter_groups=filter_groups, **request))


def test_get_by_id_with_repeated_properties_returns_each_of_them(companies, portal):
    acme = portal.company_create("Acme GmbH", domain="acme.example", city="Berlin")
    company = companies.basic_api.get_by_id(acme["id"], properties=["name", "domain", "no_such_property"])
    assert company.id == acme["id"] and company.archived is False
    assert company.properties == {"name": "Acme GmbH", "domain": "acme.example"}
    assert company.updated_at.tzinfo is not None and company.created_at <= company.updated_at


def test_get_by_id_without_properties_returns_all_of_them(companies, portal):
    acme = portal.company_create("Acme GmbH", domain="acme.example")
    company = companies.basic_api.get_by_id(acme["id"])
    assert company.properties["domain"] == "acme.example" and company.properties["hs_object_id"] == acme["id"]


def test_get_by_id_of_an_unknown_or_archived_company_is_not_found(companies, portal):
    archived = portal.company_create("Gone")
    portal.companies[archived["id"]]["archived"] = True
    for company_id in ("1", archived["id"]):
        with pytest.raises(NotFoundException) as raised:
            companies.basic_api.get_by_id(company_id)
        assert json.loads(raised.value.body)["category"] == "OBJECT_NOT_FOUND"


def test_update_writes_string_properties_and_emits_the_property_change(companies, portal):
    acme = portal.company_create("Acme GmbH")
    updated = companies.basic_api.update(
        acme["id"], simple_public_object_input=SimplePublicObjectInput(properties={ERP_ID_PROPERTY: "ERP-7"}))
    assert isinstance(updated, SimplePublicObject) and updated.properties[ERP_ID_PROPERTY] == "ERP-7"
    assert portal.write_backs == [(acme["id"], ERP_ID_PROPERTY, "ERP-7")]
    [event] = [e for e in portal.events_for(acme["id"]) if e["subscriptionType"] == "company.propertyChange"]
    assert (event["propertyName"], event["propertyValue"]) == (ERP_ID_PROPERTY, "ERP-7")


def test_update_of_an_unknown_property_or_company_is_refused(companies, portal):
    acme = portal.company_create("Acme GmbH")
    with pytest.raises(ApiException) as raised:
        companies.basic_api.update(acme["id"], simple_public_object_input=SimplePublicObjectInput(
            properties={"no_such_property": "x"}))
    assert raised.value.status == 400 and json.loads(raised.value.body)["category"] == "VALIDATION_ERROR"
    with pytest.raises(NotFoundException):
        companies.basic_api.update("1", simple_public_object_input=SimplePublicObjectInput(properties={"name": "x"}))
    assert portal.write_backs == []


def test_search_by_last_modified_pages_with_after(companies, portal):
    ids = [portal.company_create(f"Company {n}")["id"] for n in range(5)]
    since = portal.companies[ids[1]]["properties"]["hs_lastmodifieddate"]
    gte = Filter(property_name="hs_lastmodifieddate", operator="GTE", value=since)
    sort = [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]
    seen, after = [], None
    while True:
        page = search(companies, gte, sorts=sort, properties=["name"], limit=2, after=after)
        assert page.total == 4 and all(set(c.properties) == {"name"} for c in page.results)
        seen += [c.id for c in page.results]
        if page.paging is None:
            break
        after = page.paging.next.after
    assert seen == ids[1:]


def test_search_by_an_exact_property_value_finds_the_company(companies, portal):
    portal.company_create("Other", **{ERP_ID_PROPERTY: "ERP-1"})
    acme = portal.company_create("Acme GmbH", **{ERP_ID_PROPERTY: "ERP-7"})
    found = search(companies, Filter(property_name=ERP_ID_PROPERTY, operator="EQ", value="ERP-7"))
    assert (found.total, [c.id for c in found.results]) == (1, [acme["id"]])


def test_search_ands_filters_in_a_group_and_ors_the_groups(companies, portal):
    a = portal.company_create("A", city="Berlin", country="DE")["id"]
    b = portal.company_create("B", city="Paris", country="FR")["id"]
    portal.company_create("C", city="Berlin", country="US")
    de_berlin = FilterGroup(filters=[Filter(property_name="city", operator="EQ", value="Berlin"),
                                     Filter(property_name="country", operator="EQ", value="DE")])
    france = FilterGroup(filters=[Filter(property_name="country", operator="EQ", value="FR")])
    assert {c.id for c in search(companies, groups=[de_berlin, france]).results} == {a, b}


def test_search_sorts_descending_by_one_property(companies, portal):
    ids = [portal.company_create(f"Company {n}")["id"] for n in range(3)]
    newest_first = search(companies, sorts=[{"propertyName": "hs_lastmodifieddate", "direction": "DESCENDING"}])
    assert [c.id for c in newest_first.results] == ids[::-1]


@pytest.mark.parametrize("request_fields", [
    {"groups": [FilterGroup(filters=[Filter(property_name="name", operator="CONTAINS_TOKEN", value="A")])]},
    {"groups": [FilterGroup(filters=[Filter(property_name="hs_lastmodifieddate", operator="GTE", value="soon")])]},
    {"sorts": [{"propertyName": "name", "direction": "SIDEWAYS"}]},
])
def test_search_refuses_what_the_sandbox_does_not_model(companies, request_fields):
    with pytest.raises(ApiException) as raised:
        search(companies, **request_fields)
    assert raised.value.status == 400 and json.loads(raised.value.body)["category"] == "VALIDATION_ERROR"


def test_a_wrong_token_is_unauthorized(portal):
    with pytest.raises(UnauthorizedException):
        sdk(portal, token="pat-wrong").basic_api.get_by_id("1")


def test_rate_limits_and_5xx_reach_the_sdk_with_their_bodies(portal):
    companies = sdk(portal, retry=Retry(total=0, respect_retry_after_header=False))
    acme = portal.company_create("Acme GmbH")
    portal.rate_limit_next(policy="TEN_SECONDLY_ROLLING", retry_after=2)
    with pytest.raises(ApiException) as raised:
        companies.basic_api.get_by_id(acme["id"])
    assert raised.value.status == 429 and raised.value.headers["Retry-After"] == "2"
    assert json.loads(raised.value.body)["policyName"] == "TEN_SECONDLY_ROLLING"
    portal.fail_next(502)
    with pytest.raises(ServiceException):
        search(companies)
    assert companies.basic_api.get_by_id(acme["id"]).id == acme["id"]


def test_the_sdks_default_retry_honours_retry_after_on_a_429(companies, portal):
    acme = portal.company_create("Acme GmbH")
    portal.rate_limit_next(retry_after=0)
    assert companies.basic_api.get_by_id(acme["id"]).id == acme["id"]


def test_timestamps_parse_as_the_sdk_models_expect(companies, portal):
    acme = portal.company_create("Acme GmbH")
    company = companies.basic_api.get_by_id(acme["id"])
    modified_ms = int(company.properties["hs_lastmodifieddate"])
    assert company.updated_at == dt.datetime.fromtimestamp(modified_ms / 1000, tz=dt.UTC)


def test_a_signed_sandbox_batch_passes_the_sdks_v3_check(portal):
    portal.company_create("Acme GmbH")
    url = "https://hub.example/api/webhooks/hubspot/?portal=62515"
    body, headers = portal.webhook_request(portal.events, url)
    check = {"request_body": body.decode(), "http_uri": url, "signature_version": "v3",
             "timestamp": headers["X-HubSpot-Request-Timestamp"]}
    assert Signature.is_valid(headers["X-HubSpot-Signature-v3"], portal.client_secret, **check) is True
    assert Signature.is_valid(headers["X-HubSpot-Signature-v3"], "other-secret", **check) is False
