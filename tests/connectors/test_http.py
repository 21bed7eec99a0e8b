"""The shared HTTP layer: the status table and vendor overrides, Retry-After, transport
failures sent or not sent, idempotent or not, accepted statuses, the outbound hook."""

import datetime as dt

import httpx
import pytest

from connectors import http
from connectors.errors import NeedsConfiguration, Permanent, RateLimited, Retryable


def client_answering(answer):
    """A client whose every request gets ``answer`` (a response, or an exception raised)."""

    def handler(request):
        if isinstance(answer, Exception):
            raise answer
        return answer

    return http.client(base_url="https://vendor.test", transport=httpx.MockTransport(handler))


def send(answer, method="GET", **kwargs):
    return http.request(client_answering(answer), method, "/thing", vendor="Vendor", what="read thing", **kwargs)


def failure(answer, method="GET", **kwargs):
    with pytest.raises(Exception) as caught:
        send(answer, method, **kwargs)
    return caught.value


class TestDefaultTable:
    @pytest.mark.parametrize("status,expected", [
        (429, RateLimited), (401, NeedsConfiguration), (403, NeedsConfiguration),
        (408, Retryable), (409, Retryable), (423, Retryable),
        (500, Retryable), (502, Retryable), (503, Retryable), (504, Retryable),
        (400, Permanent), (404, Permanent), (422, Permanent), (302, Permanent),
    ])
    def test_a_status_maps_to_its_class(self, status, expected):
        error = failure(httpx.Response(status, text="no"))
        assert type(error) is expected
        assert error.http_status == status
        assert "Vendor read thing: HTTP" in str(error)

    def test_2xx_answers_are_returned(self):
        assert send(httpx.Response(201, json={"id": 1})).json() == {"id": 1}

    def test_the_default_table_is_read_only(self):
        with pytest.raises(TypeError):
            http.DEFAULT_STATUS_TABLE[404] = NeedsConfiguration


class TestVendorOverrides:
    def test_a_vendor_row_replaces_the_default_and_keeps_the_rest(self):
        table = http.status_table({404: NeedsConfiguration, "5xx": Permanent})
        assert http.status_class(404, table) is NeedsConfiguration
        assert http.status_class(503, table) is Permanent
        assert http.status_class(429, table) is RateLimited
        assert http.status_class(404) is Permanent  # the default is untouched

    def test_an_exact_row_wins_over_its_class_row(self):
        table = http.status_table({503: RateLimited})
        assert http.status_class(503, table) is RateLimited
        assert http.status_class(502, table) is Retryable

    def test_the_vendor_error_function_decides(self):
        def error_for(response, *, what):
            return http.status_error(response, f"Acme {what}", cls=NeedsConfiguration)

        error = failure(httpx.Response(400), error_for=error_for)
        assert type(error) is NeedsConfiguration and str(error) == "Acme read thing"

    def test_a_rate_limit_without_retry_after_waits_the_vendor_pause(self):
        error = http.status_error(httpx.Response(429), "m", rate_limit_wait=60.0)
        assert error.retry_after == 60.0
        error = http.status_error(httpx.Response(429, headers={"Retry-After": "7"}), "m", rate_limit_wait=60.0)
        assert error.retry_after == 7


class TestRetryAfter:
    def test_seconds(self):
        error = failure(httpx.Response(429, headers={"Retry-After": "7"}))
        assert isinstance(error, RateLimited) and error.retry_after == 7

    def test_an_http_date(self):
        now = dt.datetime(2026, 11, 27, 8, 0, 0, tzinfo=dt.UTC)
        assert http.parse_retry_after("Fri, 27 Nov 2026 08:00:30 GMT", now=now) == 30
        assert http.parse_retry_after("Fri, 27 Nov 2026 07:59:00 GMT", now=now) == 0

    def test_garbage_and_absence_are_none(self):
        assert http.parse_retry_after("garbage") is None
        assert http.parse_retry_after(None) is None
        assert http.parse_retry_after("") is None

    def test_a_5xx_carries_it(self):
        error = failure(httpx.Response(503, headers={"Retry-After": "3"}))
        assert type(error) is Retryable and error.retry_after == 3

    def test_it_is_filled_in_when_the_vendor_left_it_out(self):
        def error_for(response, *, what):
            return Retryable("busy", http_status=response.status_code)

        assert failure(httpx.Response(503, headers={"Retry-After": "4"}), error_for=error_for).retry_after == 4

    def test_a_vendor_wait_is_kept(self):
        def error_for(response, *, what):
            return RateLimited("quota", retry_after=3600.0, http_status=429)

        assert failure(httpx.Response(429, headers={"Retry-After": "1"}), error_for=error_for).retry_after == 3600


class TestTransportFailures:
    @pytest.mark.parametrize("exc", [
        httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("no connection"),
    ])
    @pytest.mark.parametrize("method", ["GET", "POST", "PATCH"])
    def test_never_sent_is_retryable_with_a_known_outcome(self, exc, method):
        error = failure(exc, method)
        assert type(error) is Retryable and not error.outcome_unknown
        assert "not sent" in str(error)

    @pytest.mark.parametrize("exc", [
        httpx.ReadTimeout("slow"), httpx.WriteTimeout("slow"), httpx.ReadError("reset"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ])
    @pytest.mark.parametrize("method", ["POST", "PATCH"])
    def test_after_sending_a_write_has_an_unknown_outcome(self, exc, method):
        error = failure(exc, method)
        assert type(error) is Retryable and error.outcome_unknown

    @pytest.mark.parametrize("exc", [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped")])
    @pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"])
    def test_after_sending_an_idempotent_method_has_a_known_outcome(self, exc, method):
        error = failure(exc, method)
        assert type(error) is Retryable and not error.outcome_unknown

    def test_a_post_declared_idempotent_has_a_known_outcome(self):
        assert not failure(httpx.ReadTimeout("slow"), "POST", idempotent=True).outcome_unknown

    def test_a_get_declared_not_idempotent_has_an_unknown_outcome(self):
        assert failure(httpx.ReadTimeout("slow"), "GET", idempotent=False).outcome_unknown

    def test_an_unusable_url_scheme_needs_configuration(self):
        with pytest.raises(NeedsConfiguration):
            http.request(http.client(), "GET", "ftp://vendor.test/x", vendor="Vendor", what="read")


class TestServerErrorsAndIdempotency:
    @pytest.mark.parametrize("method", ["POST", "PATCH"])
    def test_a_5xx_to_a_write_has_an_unknown_outcome(self, method):
        error = failure(httpx.Response(502), method)
        assert type(error) is Retryable and error.outcome_unknown

    @pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
    def test_a_5xx_to_an_idempotent_method_has_a_known_outcome(self, method):
        assert not failure(httpx.Response(502), method).outcome_unknown

    def test_a_5xx_to_a_post_declared_idempotent_has_a_known_outcome(self):
        assert not failure(httpx.Response(500), "POST", idempotent=True).outcome_unknown

    @pytest.mark.parametrize("status", [408, 409, 423, 429])
    def test_a_refusal_before_running_has_a_known_outcome(self, status):
        error = failure(httpx.Response(status), "POST")
        assert isinstance(error, Retryable) and not error.outcome_unknown

    def test_a_5xx_mapped_to_permanent_by_the_vendor_stays_permanent(self):
        error = failure(httpx.Response(500), "POST", error_for=lambda r, *, what: Permanent("bad"))
        assert type(error) is Permanent


class TestAcceptedStatuses:
    def test_an_accepted_status_comes_back(self):
        assert send(httpx.Response(401), "POST", accept={401}).status_code == 401

    def test_other_statuses_still_raise(self):
        assert isinstance(failure(httpx.Response(403), "POST", accept={401}), NeedsConfiguration)


class TestClient:
    def test_timeouts_base_url_and_headers(self):
        built = http.client(base_url="https://vendor.test/", headers={"Authorization": "Bearer t"},
                            timeout=12.0, connect_timeout=2.0)
        assert built.timeout == httpx.Timeout(12.0, connect=2.0)
        assert str(built.base_url) == "https://vendor.test"
        assert built.headers["Authorization"] == "Bearer t"

    def test_redirects_are_not_followed(self):
        seen = []

        def handler(request):
            seen.append(str(request.url))
            return httpx.Response(302, headers={"Location": "http://169.254.169.254/"})

        built = http.client(base_url="https://vendor.test", transport=httpx.MockTransport(handler))
        with pytest.raises(Permanent):
            http.request(built, "GET", "/x", vendor="Vendor", what="read")
        assert seen == ["https://vendor.test/x"]


class TestOutboundPolicy:
    @pytest.fixture
    def policy(self):
        checked = []

        def refuse_internal(request):
            checked.append(str(request.url))
            if request.url.host == "10.0.0.1":
                raise NeedsConfiguration(f"outbound URL {request.url} is not allowed")

        previous = http.outbound_policy_set(refuse_internal)
        yield checked
        http.outbound_policy_set(previous)

    def test_no_policy_is_a_no_op(self):
        assert send(httpx.Response(200)).status_code == 200

    def test_every_request_passes_the_policy(self, policy):
        send(httpx.Response(200))
        assert policy == ["https://vendor.test/thing"]

    def test_a_refused_request_is_never_sent(self, policy):
        sent = []

        def handler(request):
            sent.append(request)
            return httpx.Response(200)

        built = http.client(base_url="http://10.0.0.1", transport=httpx.MockTransport(handler))
        with pytest.raises(NeedsConfiguration, match="not allowed"):
            http.request(built, "POST", "/x", vendor="Vendor", what="create")
        assert sent == []
