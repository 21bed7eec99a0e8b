"""The Stripe sandboxes driven by Stripe's own SDK (``stripe``): the API sandbox over
real HTTP, and the webhook sandbox's signed events through ``stripe.Webhook``.

The SDK is the independent check that the sandbox speaks Stripe's wire format:
paths, form encoding, list and search objects, error bodies and the
``Idempotency-Key`` contract. Every endpoint the sandbox serves is exercised here.
"""

import pytest
import stripe

from connectors.stripe.api_sandbox import StripeApiSandbox, search_clauses
from connectors.stripe.sandbox import StripeSandbox

API_KEY = "sk_test_sdk"


@pytest.fixture
def sandbox():
    served = StripeApiSandbox(api_key=API_KEY)
    served.serve()
    yield served
    served.stop()


def sdk(sandbox, *, api_key=API_KEY, retries=0):
    return stripe.StripeClient(api_key, base_addresses={"api": sandbox.url}, max_network_retries=retries)


@pytest.fixture
def customers(sandbox):
    return sdk(sandbox).v1.customers


def create(customers, name, *, email=None, hub_id=None, key=None):
    params = {"name": name, "metadata": {"hub_id": str(hub_id)} if hub_id is not None else {}}
    if email:
        params["email"] = email
    return customers.create(params=params, options={"idempotency_key": key} if key else {})


def test_create_and_retrieve_a_customer_with_nested_parameters(customers, sandbox):
    created = customers.create(params={
        "name": "Acme GmbH", "email": "billing@acme.example",
        "address": {"line1": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"},
        "metadata": {"hub_id": "7"},
    })
    assert isinstance(created, stripe.Customer) and created.id.startswith("cus_")
    fetched = customers.retrieve(created.id)
    assert (fetched.name, fetched.email, fetched.metadata["hub_id"]) == ("Acme GmbH", "billing@acme.example", "7")
    assert (fetched.address.city, fetched.address.country, fetched.address.postal_code) == ("Berlin", "DE", "10115")
    assert sandbox.customers_with_hub_id(7)[0]["id"] == created.id


def test_update_changes_fields_and_an_empty_metadata_value_unsets_the_key(customers):
    created = customers.create(params={"name": "Acme", "metadata": {"hub_id": "7", "legacy": "x"}})
    updated = customers.update(created.id, params={"name": "Acme AG", "email": "", "metadata": {"legacy": ""}})
    assert (updated.name, updated.email) == ("Acme AG", None)
    assert customers.retrieve(created.id).metadata.to_dict() == {"hub_id": "7"}


def test_a_replayed_create_returns_the_first_customer(customers, sandbox):
    first = create(customers, "Acme", hub_id=7, key="replay-1")
    again = create(customers, "Acme", hub_id=7, key="replay-1")
    assert again.id == first.id and len(sandbox.customers) == 1


def test_a_key_reused_with_other_parameters_is_an_idempotency_error(customers, sandbox):
    create(customers, "Acme", hub_id=7, key="reused")
    with pytest.raises(stripe.IdempotencyError) as raised:
        create(customers, "Other", hub_id=7, key="reused")
    assert raised.value.http_status == 400 and len(sandbox.customers) == 1


def test_the_sdks_own_retry_after_a_5xx_reuses_its_key_and_creates_one_customer(sandbox):
    sandbox.fail_next(500)
    created = sdk(sandbox, retries=1).v1.customers.create(params={"name": "Acme"})
    posts = [key for method, path, key in sandbox.requests if method == "POST" and path == "/v1/customers"]
    assert len(posts) == 2 and posts[0] == posts[1] and posts[0]  # the SDK's generated key, sent twice
    assert list(sandbox.customers) == [created.id]


@pytest.mark.parametrize(("status", "error"), [(429, stripe.RateLimitError), (500, stripe.APIError),
                                               (400, stripe.InvalidRequestError)])
def test_injected_faults_reach_the_sdk_as_its_error_classes(customers, sandbox, status, error):
    sandbox.fail_next(status)
    with pytest.raises(error) as raised:
        customers.create(params={"name": "Acme"})
    assert raised.value.http_status == status and sandbox.customers == {}


def test_an_unknown_customer_is_resource_missing(customers):
    with pytest.raises(stripe.InvalidRequestError) as raised:
        customers.retrieve("cus_missing")
    assert (raised.value.http_status, raised.value.code) == (404, "resource_missing")
    with pytest.raises(stripe.InvalidRequestError):
        customers.update("cus_missing", params={"name": "x"})


def test_a_wrong_api_key_is_an_authentication_error(sandbox):
    with pytest.raises(stripe.AuthenticationError) as raised:
        sdk(sandbox, api_key="sk_test_wrong").v1.customers.list()
    assert raised.value.http_status == 401


def test_an_endpoint_the_sandbox_does_not_serve_is_refused_not_faked(sandbox):
    with pytest.raises(stripe.InvalidRequestError, match="Unrecognized request URL") as raised:
        sdk(sandbox).v1.charges.retrieve("ch_1")
    assert raised.value.http_status == 404


def test_list_is_newest_first_and_pages_with_starting_after(customers, sandbox):
    ids = [create(customers, f"C{n}").id for n in range(3)]
    page = customers.list(params={"limit": 2})
    assert [c.id for c in page.data] == ids[:0:-1] and page.has_more is True
    assert [c.id for c in page.auto_paging_iter()] == ids[::-1]
    assert [q for m, p, q in sandbox.requests if m == "GET"] == [None, None]  # GETs carry no key
    last = customers.list(params={"limit": 2, "starting_after": ids[1]})
    assert [c.id for c in last.data] == [ids[0]] and last.has_more is False


def test_list_filters_by_email_case_sensitively(customers):
    mine = create(customers, "A", email="ap@acme.example")
    other = create(customers, "B", email="AP@acme.example")
    assert [c.id for c in customers.list(params={"email": "ap@acme.example"}).data] == [mine.id]
    after_other = customers.list(params={"email": "ap@acme.example", "starting_after": other.id})
    assert [c.id for c in after_other.data] == [mine.id]  # the cursor need not match the filter


@pytest.mark.parametrize(("params", "param"), [({"limit": 0}, "limit"), ({"limit": 101}, "limit"),
                                               ({"starting_after": "cus_missing"}, "starting_after"),
                                               ({"created": {"gte": 1}}, "created[gte]")])
def test_list_refuses_bad_and_unmodelled_parameters(customers, params, param):
    with pytest.raises(stripe.InvalidRequestError) as raised:
        customers.list(params=params)
    assert raised.value.http_status == 400 and raised.value.param == param


def test_search_finds_a_customer_by_hub_id_in_metadata(customers):
    create(customers, "Acme", hub_id=7)
    mine = create(customers, "Acme", hub_id=8)
    result = customers.search(params={"query": "metadata['hub_id']:'8'"})
    assert isinstance(result, stripe.SearchResultObject)
    assert [c.id for c in result.data] == [mine.id] and result.has_more is False and result.next_page is None


def test_search_combines_clauses_with_and_and_pages_with_next_page(customers):
    wanted = [create(customers, "Acme", email="ap@acme.example", hub_id=n).id for n in range(3)]
    create(customers, "Acme", email="other@acme.example")
    create(customers, "Other", email="ap@acme.example")
    first = customers.search(params={"query": 'name:"Acme" AND email:"ap@acme.example"', "limit": 2})
    assert first.has_more is True and first.next_page
    assert [c.id for c in first.auto_paging_iter()] == wanted[::-1]
    both = customers.search(params={"query": "name:'Acme' metadata[\"hub_id\"]:'1'"})
    assert [c.id for c in both.data] == [wanted[1]]


@pytest.mark.parametrize("query", ["name:'A' OR name:'B'", "-name:'A'", "name~'Ac'", "name:'A' AND", ""])
def test_search_refuses_queries_the_sandbox_cannot_run(customers, query):
    with pytest.raises(stripe.InvalidRequestError) as raised:
        customers.search(params={"query": query})
    assert raised.value.http_status == 400 and raised.value.param == "query"


def test_search_clause_parser():
    assert search_clauses("email:'a@b' AND metadata['hub_id']:\"7\"") == [("email", None, "a@b"),
                                                                         ("metadata", "hub_id", "7")]
    assert search_clauses("email:'a' OR email:'b'") is None


# -- the webhook side: what StripeSandbox signs, stripe.Webhook accepts ----------

SECRET = "whsec_sdk"


def signed_invoice_event(**sandbox_options):
    objects = StripeSandbox(SECRET, seed=3, **sandbox_options)
    invoice = objects.finalize(objects.invoice(objects.customer("Acme", "ap@acme.example"), [("Seat", 2, 500)]))
    return objects.webhook_request(objects.event("invoice.finalized", invoice))


@pytest.mark.parametrize("api_version", ["2025-03-31.basil", "2024-06-20"])
def test_a_signed_sandbox_event_is_accepted_by_construct_event(api_version):
    body, headers = signed_invoice_event(api_version=api_version)
    event = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], SECRET)
    assert isinstance(event, stripe.Event) and event.type == "invoice.finalized"
    invoice = event.data.object
    assert isinstance(invoice, stripe.Invoice) and invoice.status == "open" and invoice.total == 1100
    assert invoice.lines.data[0].quantity == 2


def test_a_tampered_sandbox_event_fails_the_sdks_signature_check():
    body, headers = signed_invoice_event()
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body.replace(b"open", b"paid"), headers["Stripe-Signature"], SECRET)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], "whsec_other")
