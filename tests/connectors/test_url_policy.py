"""The outbound URL policy: no calls to internal networks (SSRF), credentials only to
the connection's own host."""

import httpx
import pytest
from django.core.exceptions import ValidationError

from connectors.errors import Permanent
from connectors.models import Connection
from connectors.salesforce.client import SalesforceClient
from connectors.services import connection_upsert, connector_for
from connectors.url_policy import PolicyTransport, UrlRefused, validate_connection_url

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url, vendor, reason", [
    ("http://api.stripe.com", "stripe", "only https"),
    ("https://evil.example.com", "stripe", "api.stripe.com"),
    ("https://api.hubapi.com.evil.com", "hubspot", "api.hubapi.com"),
    ("https://attacker.example", "salesforce", "salesforce.com"),
    ("https://169.254.169.254/latest/meta-data/", "tryton", "internal address"),
    ("https://10.0.0.7:8000", "tryton", "internal address"),
    ("https://[::ffff:127.0.0.2]/", "tryton", "internal address"),
    ("https://user:pw@erp.example.com", "tryton", "credentials"),
    ("file:///etc/passwd", "tryton", "no host"),
    ("gopher://erp.example.com", "tryton", "only https"),
    ("", "tryton", "empty"),
])
def test_connection_urls_outside_the_policy_are_refused_on_save(url, vendor, reason):
    with pytest.raises(UrlRefused, match=reason):
        validate_connection_url(url, vendor=vendor)


@pytest.mark.parametrize("url, vendor", [
    ("https://api.stripe.com", "stripe"),
    ("https://acme.my.salesforce.com", "salesforce"),
    ("https://erp.example.com:8000", "tryton"),
    ("http://127.0.0.1:8123", "tryton"),  # an allowed internal host (development default)
])
def test_connection_urls_inside_the_policy_pass(url, vendor):
    assert validate_connection_url(url, vendor=vendor) == url


def test_the_service_and_the_admin_form_refuse_a_metadata_url(settings):
    with pytest.raises(UrlRefused, match="config.url"):
        connection_upsert(name="erp", vendor="tryton", role="erp",
                          config={"url": "http://169.254.169.254/", "database": "x"}, credentials={})
    assert not Connection.objects.exists()
    connection = Connection(name="erp", vendor="tryton", role="erp", config={"url": "https://10.1.2.3/"})
    with pytest.raises(ValidationError, match="internal address"):
        connection.full_clean()


def test_an_internal_host_is_allowed_only_when_named(settings):
    settings.HUB_ALLOWED_INTERNAL_HOSTS = []
    with pytest.raises(UrlRefused):
        validate_connection_url("http://127.0.0.1:8000", vendor="tryton")
    settings.HUB_ALLOWED_INTERNAL_HOSTS = ["erp.internal"]
    assert validate_connection_url("http://erp.internal:8000", vendor="tryton")


def _transport(addresses, seen):
    def handler(request):
        seen.append(str(request.url))
        return httpx.Response(200, json={})

    return PolicyTransport(httpx.MockTransport(handler), resolve=lambda host, port: addresses[host])


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "192.168.1.1", "169.254.169.254", "::1",
                                     "fd00:ec2::254", "100.64.0.1", "0.0.0.0"])
def test_a_public_name_resolving_to_an_internal_address_is_refused_at_connect_time(settings, address):
    settings.HUB_ALLOWED_INTERNAL_HOSTS = []
    seen: list[str] = []
    client = httpx.Client(transport=_transport({"erp.example.com": [address]}, seen))
    with pytest.raises(UrlRefused, match="internal address"):
        client.get("https://erp.example.com/")
    assert seen == []  # nothing was sent


def test_public_addresses_and_allowed_internal_hosts_pass_at_connect_time(settings):
    settings.HUB_ALLOWED_INTERNAL_HOSTS = ["erp.lan"]
    seen: list[str] = []
    client = httpx.Client(transport=_transport({"api.stripe.com": ["54.187.216.72"], "erp.lan": ["10.0.0.9"]}, seen))
    assert client.get("https://api.stripe.com/v1/x").status_code == 200
    assert client.get("http://erp.lan/").status_code == 200
    assert len(seen) == 2


def test_a_connector_on_the_real_network_gets_the_policy_transport(settings):
    connection = connection_upsert(name="stripe", vendor="stripe", role="billing", config={},
                                   credentials={"api_key": "sk_test_1"})
    connector = connector_for(connection)
    assert connector.transport is None  # nothing injected: connectors.http.client builds the guarded one
    assert isinstance(connector.client._http._transport, PolicyTransport)


def test_salesforce_never_sends_the_token_to_another_host_named_by_next_records_url():
    seen: list[tuple[str, str | None]] = []

    def handler(request):
        seen.append((request.url.host, request.headers.get("Authorization")))
        return httpx.Response(200, json={"records": [{"Id": "001A"}], "done": False,
                                         "nextRecordsUrl": "https://attacker.example/steal"})

    client = SalesforceClient("https://acme.my.salesforce.com", "00Dsecret", transport=httpx.MockTransport(handler))
    records = client.query("SELECT Id FROM Account")
    assert next(records) == {"Id": "001A"}
    with pytest.raises(Permanent, match="leaves the instance"):
        next(records)
    assert seen == [("acme.my.salesforce.com", "Bearer 00Dsecret")]


def test_salesforce_follows_a_relative_or_same_origin_next_records_url():
    pages = iter([
        {"records": [{"Id": "1"}], "done": False, "nextRecordsUrl": "/services/data/v60.0/query/01g-2000"},
        {"records": [{"Id": "2"}], "done": False,
         "nextRecordsUrl": "https://acme.my.salesforce.com/services/data/v60.0/query/01g-4000"},
        {"records": [{"Id": "3"}], "done": True},
    ])
    hosts = []

    def handler(request):
        hosts.append(request.url.host)
        return httpx.Response(200, json=next(pages))

    client = SalesforceClient("https://acme.my.salesforce.com", "t", transport=httpx.MockTransport(handler))
    assert [r["Id"] for r in client.query("SELECT Id FROM Account")] == ["1", "2", "3"]
    assert set(hosts) == {"acme.my.salesforce.com"}
