import base64
import datetime as dt
import json
from decimal import Decimal

import httpx
import pytest

from connectors.errors import NeedsConfiguration, Permanent, RateLimited, Retryable
from connectors.tryton.client import TrytonClient, decode, encode

URL = "http://erp.test"
PREFERENCES = {"company": 1, "companies": [1, 2], "language": "en"}


class FakeTryton:
    """A scripted Tryton: login and preferences answer like the real server;
    ``answers`` is a queue of responses (or exceptions) for the other calls."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests = []
        self.logins = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append((request, body))
        if body["method"] == "common.db.login":
            self.logins += 1
            if body["params"][1]["password"] != "secret-pw":
                return httpx.Response(401, text="<title>401 Unauthorized</title>")
            return httpx.Response(200, json={"id": body["id"], "result": [2, f"key{self.logins}", None]})
        if body["method"] == "model.res.user.get_preferences":
            return httpx.Response(200, json={"id": body["id"], "result": PREFERENCES})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json={"id": body["id"], **answer})

    def calls(self):
        return [body for _, body in self.requests if body["method"].startswith("model.account")]


def client_for(fake, password="secret-pw"):
    return TrytonClient(URL, "erp", "hub", password, transport=httpx.MockTransport(fake))


def test_login_session_header_and_context_merge():
    fake = FakeTryton({"result": [5]})
    client = client_for(fake)
    assert client.call("account.invoice", "search", [("reference", "=", "x")], context={"company": 2}) == [5]
    request, body = fake.requests[-1]
    assert request.url == f"{URL}/erp/rpc/"
    assert request.headers["Authorization"] == "Session " + base64.b64encode(b"hub:2:key1").decode()
    assert body["method"] == "model.account.invoice.search"
    assert body["params"] == [[["reference", "=", "x"]], {**PREFERENCES, "company": 2}]


def test_preferences_are_fetched_once():
    fake = FakeTryton({"result": 1}, {"result": 2})
    client = client_for(fake)
    client.call("account.invoice", "a")
    client.call("account.invoice", "b")
    methods = [body["method"] for _, body in fake.requests]
    assert methods.count("model.res.user.get_preferences") == 1
    assert methods.count("common.db.login") == 1


def test_401_on_a_model_call_logs_in_again_once():
    fake = FakeTryton(httpx.Response(401), {"result": None})
    client = client_for(fake)
    assert client.call("account.invoice", "post", [1]) is None
    assert fake.logins == 2
    assert fake.requests[-1][0].headers["Authorization"] == "Session " + base64.b64encode(b"hub:2:key2").decode()


def test_401_after_relogin_needs_configuration():
    fake = FakeTryton(httpx.Response(401), httpx.Response(401))
    with pytest.raises(NeedsConfiguration) as caught:
        client_for(fake).call("account.invoice", "post", [1])
    assert caught.value.http_status == 401
    assert fake.logins == 2


def test_wrong_password_needs_configuration():
    with pytest.raises(NeedsConfiguration, match="rejected the hub's credentials"):
        client_for(FakeTryton(), password="wrong").call("account.invoice", "search", [])


def test_user_error_is_permanent_with_its_message():
    error = ["UserError", ["The code on party must be unique.", "", None]]
    with pytest.raises(Permanent, match="The code on party must be unique") as caught:
        client_for(FakeTryton({"error": error})).call("party.party", "create", [{}])
    assert not isinstance(caught.value, Retryable | NeedsConfiguration)


def test_user_warning_is_permanent():
    error = ["UserWarning", ["invoice_date_future", "Invoices are dated in the future.", ""]]
    with pytest.raises(Permanent, match="dated in the future"):
        client_for(FakeTryton({"error": error})).call("account.invoice", "post", [1])


def test_user_warning_carries_the_name_that_confirms_it():
    from connectors.tryton.client import TrytonWarning

    error = ["UserWarning", ["9601eb.invoice_taxes", "The invoice does not have the default taxes", ""]]
    with pytest.raises(TrytonWarning) as caught:
        client_for(FakeTryton({"error": error})).call("account.invoice", "post", [1])
    assert caught.value.name == "9601eb.invoice_taxes"


def test_unexpected_error_is_permanent_without_the_traceback():
    error = ["'NoneType' object has no attribute 'id'", "Traceback (most recent call last):\n  File ..."]
    with pytest.raises(Permanent) as caught:
        client_for(FakeTryton({"error": error})).call("account.invoice", "create", [{}])
    assert "no attribute 'id'" in str(caught.value)
    assert "Traceback" not in str(caught.value)


@pytest.mark.parametrize("error", [
    ["ConcurrencyException", "Records were modified in the meanwhile"],
    ["database is locked", ""],
])
def test_lock_contention_is_retryable(error):
    with pytest.raises(Retryable):
        client_for(FakeTryton({"error": error})).call("account.invoice", "post", [1])


def test_429_is_rate_limited_with_retry_after():
    fake = FakeTryton(httpx.Response(429, headers={"Retry-After": "7"}))
    with pytest.raises(RateLimited) as caught:
        client_for(fake).call("account.invoice", "search", [])
    assert caught.value.retry_after == 7
    assert caught.value.http_status == 429


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retryable(status):
    fake = FakeTryton(httpx.Response(status, headers={"Retry-After": "3"}, text="busy"))
    with pytest.raises(Retryable) as caught:
        client_for(fake).call("account.invoice", "search", [])
    assert not isinstance(caught.value, RateLimited)
    assert (caught.value.http_status, caught.value.retry_after) == (status, 3)


@pytest.mark.parametrize("status", [403, 404])
def test_forbidden_and_unknown_database_need_configuration(status):
    with pytest.raises(NeedsConfiguration):
        client_for(FakeTryton(httpx.Response(status))).call("account.invoice", "search", [])


def test_unknown_database_at_login_needs_configuration():
    def handler(request):
        return httpx.Response(404)

    with pytest.raises(NeedsConfiguration, match="'erp' not found"):
        TrytonClient(URL, "erp", "hub", "pw", transport=httpx.MockTransport(handler)).login()


def test_422_is_permanent():
    fake = FakeTryton(httpx.Response(422, text="<p>Missing context argument</p>"))
    with pytest.raises(Permanent, match="422"):
        client_for(fake).call("account.invoice", "search", [])


def test_read_timeout_is_retryable_with_unknown_outcome():
    fake = FakeTryton(httpx.ReadTimeout("timed out"))
    with pytest.raises(Retryable) as caught:
        client_for(fake).call("account.invoice", "post", [1])
    assert caught.value.outcome_unknown


def test_remote_disconnect_has_unknown_outcome():
    fake = FakeTryton(httpx.RemoteProtocolError("Server disconnected without sending a response."))
    with pytest.raises(Retryable) as caught:
        client_for(fake).call("account.invoice", "create", [{}])
    assert caught.value.outcome_unknown


def test_connect_error_is_retryable_and_not_sent():
    def handler(request):
        raise httpx.ConnectError("connection refused")

    with pytest.raises(Retryable) as caught:
        TrytonClient(URL, "erp", "hub", "pw", transport=httpx.MockTransport(handler)).call("res.user", "read")
    assert not caught.value.outcome_unknown


def test_decimal_and_date_travel_as_tryton_objects():
    answer = {"result": [{"total_amount": {"__class__": "Decimal", "decimal": "33.00"},
                          "invoice_date": {"__class__": "date", "year": 2026, "month": 11, "day": 27}}]}
    fake = FakeTryton(answer)
    result = client_for(fake).call("account.invoice", "write", [1], {
        "unit_price": Decimal("6.2500"), "invoice_date": dt.date(2026, 11, 27)})
    _, body = fake.requests[-1]
    assert body["params"][1] == {
        "unit_price": {"__class__": "Decimal", "decimal": "6.2500"},
        "invoice_date": {"__class__": "date", "year": 2026, "month": 11, "day": 27},
    }
    assert result == [{"total_amount": Decimal("33.00"), "invoice_date": dt.date(2026, 11, 27)}]


def test_encode_decode_round_trip():
    value = {"when": dt.datetime(2026, 11, 27, 8, 1, 2, 3), "d": Decimal("-1.5"), "b": b"\x00\xff",
             "t": dt.time(1, 2, 3), "span": dt.timedelta(seconds=90), "list": [dt.date(2026, 1, 2)]}
    assert decode(json.dumps(encode(value))) == value


@pytest.mark.parametrize("method,unknown", [("post", True), ("create", True), ("search", False), ("read", False)])
def test_a_timeout_leaves_the_outcome_unknown_only_for_writes(method, unknown):
    fake = FakeTryton(httpx.ReadTimeout("timed out"))
    with pytest.raises(Retryable) as caught:
        client_for(fake).call("account.invoice", method, [1])
    assert caught.value.outcome_unknown is unknown


@pytest.mark.parametrize("method,unknown", [("post", True), ("search", False)])
def test_a_5xx_leaves_the_outcome_of_a_write_unknown(method, unknown):
    fake = FakeTryton(httpx.Response(500, text="Internal Server Error"))
    with pytest.raises(Retryable) as caught:
        client_for(fake).call("account.invoice", method, [1])
    assert caught.value.outcome_unknown is unknown


def test_wizards_are_writes():
    fake = FakeTryton(httpx.ReadTimeout("timed out"))
    with pytest.raises(Retryable) as caught:
        client_for(fake).wizard("account.invoice.pay", "execute", 1, {}, "pay")
    assert caught.value.outcome_unknown
