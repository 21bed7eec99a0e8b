"""The HubSpot sandbox's deals, their v4 associations and line-item batch reads,
driven by hubspot-api-client over real HTTP (every endpoint it serves for deals)."""

import pytest
from hubspot import HubSpot
from hubspot.crm.deals import SimplePublicObjectInput
from hubspot.crm.deals.exceptions import NotFoundException
from hubspot.crm.line_items import BatchReadInputSimplePublicObjectId, SimplePublicObjectId

from connectors.hubspot.sandbox import HubSpotSandbox

TOKEN = "pat-sdk-token"


@pytest.fixture
def portal():
    sandbox = HubSpotSandbox(access_token=TOKEN, seed=2)
    sandbox.serve()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def crm(portal):
    return HubSpot(access_token=TOKEN, host=portal.url).crm


@pytest.fixture
def deal(portal):
    company = portal.company_create("Acme GmbH")
    return portal.deal_create(company["id"], "Acme – Pro", lines=[
        {"hs_sku": "PRO", "quantity": "5", "hub_price_ref": "pro-monthly-eur"},
        {"hs_sku": "TEAM", "quantity": "1", "hub_price_ref": "team-monthly-eur"}]), company


def test_read_a_deal_with_its_properties(crm, deal):
    created, _ = deal
    read = crm.deals.basic_api.get_by_id(created["id"], properties=["dealname", "hs_is_closed_won", "dealstage"])
    assert (read.id, read.properties["dealname"], read.properties["hs_is_closed_won"]) == (
        created["id"], "Acme – Pro", "false")
    with pytest.raises(NotFoundException):
        crm.deals.basic_api.get_by_id("1")


def test_update_a_deal_and_the_stage_sets_closed_won(crm, portal, deal):
    created, _ = deal
    crm.deals.basic_api.update(created["id"], SimplePublicObjectInput(properties={"dealstage": "closedwon"}))
    assert portal.deals[created["id"]]["properties"]["hs_is_closed_won"] == "true"
    assert portal.events[-1]["subscriptionType"] == "deal.propertyChange"
    crm.deals.basic_api.update(created["id"], SimplePublicObjectInput(properties={"hub_subscription_id": "sub_1"}))
    assert portal.write_backs[-1] == (created["id"], "hub_subscription_id", "sub_1")


def test_v4_associations_list_the_company_and_the_line_items(crm, deal, portal):
    created, company = deal
    companies = crm.associations.v4.basic_api.get_page("deals", created["id"], "companies")
    assert [str(r.to_object_id) for r in companies.results] == [company["id"]]
    items = crm.associations.v4.basic_api.get_page("deals", created["id"], "line_items")
    assert sorted(str(r.to_object_id) for r in items.results) == sorted(portal.deal_associations[created["id"]]["line_items"])
    assert items.results[0].association_types[0].type_id == 19


def test_batch_read_line_items(crm, deal, portal):
    created, _ = deal
    ids = portal.deal_associations[created["id"]]["line_items"]
    read = crm.line_items.batch_api.read(BatchReadInputSimplePublicObjectId(
        properties=["hs_sku", "quantity", "hub_price_ref"], inputs=[SimplePublicObjectId(id=i) for i in ids]))
    assert read.status == "COMPLETE"
    assert sorted((r.properties["hs_sku"], r.properties["quantity"]) for r in read.results) == [("PRO", "5"),
                                                                                                ("TEAM", "1")]
