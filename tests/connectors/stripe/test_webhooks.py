"""Stripe-Signature verification and event parsing, per stripe-python's rules."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

import pytest

from connectors.errors import InvalidSignature, MalformedPayload
from connectors.stripe.webhooks import StripeWebhookReceiver, parse_event, verify_signature

SECRET = "whsec_test_current"
OLD_SECRET = "whsec_test_previous"
NOW = 1_750_000_000
BODY = json.dumps(
    {
        "id": "evt_1Test",
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": NOW - 5,
        "data": {"object": {"id": "in_123", "object": "invoice", "status": "paid"}},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "invoice.paid",
    },
    indent=2,
).encode()


def sig(body: bytes, secret: str, t: int) -> str:
    # Independent of the module under test: the formula from Stripe's docs.
    return hmac.new(secret.encode(), f"{t}.{body.decode()}".encode(), hashlib.sha256).hexdigest()


def header(body: bytes = BODY, secret: str = SECRET, t: int = NOW) -> str:
    return f"t={t},v1={sig(body, secret, t)}"


def reason(exc_info: pytest.ExceptionInfo[BaseException]) -> str:
    return str(exc_info.value)


class TestVerifySignature:
    def test_valid_signature(self):
        verify_signature(BODY, header(), [SECRET], now=NOW)

    def test_one_of_several_v1_values_matches(self):
        value = f"t={NOW},v1={'0' * 64},v1={sig(BODY, SECRET, NOW)},v1=deadbeef"
        verify_signature(BODY, value, [SECRET], now=NOW)

    def test_other_schemes_are_ignored_next_to_v1(self):
        value = f"t={NOW},v0={'1' * 64},v1={sig(BODY, SECRET, NOW)}"
        verify_signature(BODY, value, [SECRET], now=NOW)

    def test_rotated_secrets_second_one_matches(self):
        verify_signature(BODY, header(secret=OLD_SECRET), [SECRET, OLD_SECRET], now=NOW)

    def test_wrong_secret(self):
        with pytest.raises(InvalidSignature) as exc_info:
            verify_signature(BODY, header(secret="whsec_other"), [SECRET], now=NOW)
        assert reason(exc_info) == "No signatures found matching the expected signature for payload"

    def test_message_never_contains_a_secret_or_the_expected_signature(self):
        with pytest.raises(InvalidSignature) as exc_info:
            verify_signature(BODY, header(secret="whsec_other"), [SECRET, OLD_SECRET], now=NOW)
        for secret in (SECRET, OLD_SECRET):
            assert secret not in reason(exc_info)
            assert sig(BODY, secret, NOW) not in reason(exc_info)

    def test_tampered_body(self):
        tampered = BODY.replace(b'"paid"', b'"void"', 1)
        assert tampered != BODY
        with pytest.raises(InvalidSignature, match="No signatures found matching"):
            verify_signature(tampered, header(), [SECRET], now=NOW)

    def test_reserialized_body_does_not_verify(self):
        # The raw bytes are signed: parsing and re-dumping the JSON breaks the match.
        compact = json.dumps(json.loads(BODY)).encode()
        with pytest.raises(InvalidSignature, match="No signatures found matching"):
            verify_signature(compact, header(), [SECRET], now=NOW)

    def test_tampered_timestamp(self):
        forged = f"t={NOW + 1},v1={sig(BODY, SECRET, NOW)}"
        with pytest.raises(InvalidSignature, match="No signatures found matching"):
            verify_signature(BODY, forged, [SECRET], now=NOW)

    @pytest.mark.parametrize("value", [None, ""])
    def test_missing_header(self, value):
        with pytest.raises(InvalidSignature, match="Missing Stripe-Signature header"):
            verify_signature(BODY, value, [SECRET], now=NOW)

    @pytest.mark.parametrize(
        "value",
        ["garbage", "v1=abc", "t=notanumber,v1=abc", "t=,v1=abc", "t"],
    )
    def test_unparseable_header(self, value):
        with pytest.raises(InvalidSignature) as exc_info:
            verify_signature(BODY, value, [SECRET], now=NOW)
        assert reason(exc_info) == "Unable to extract timestamp and signatures from header"

    def test_only_v0_scheme(self):
        value = f"t={NOW},v0={sig(BODY, SECRET, NOW)}"
        with pytest.raises(InvalidSignature) as exc_info:
            verify_signature(BODY, value, [SECRET], now=NOW)
        assert reason(exc_info) == "No signatures found with expected scheme v1"

    def test_a_single_secret_string_is_accepted(self):
        verify_signature(BODY, header(), SECRET, now=NOW)

    def test_no_secrets_configured_rejects(self):
        with pytest.raises(InvalidSignature, match="No signatures found matching"):
            verify_signature(BODY, header(), [], now=NOW)

    def test_stale_timestamp_rejected(self):
        t = NOW - 301
        with pytest.raises(InvalidSignature) as exc_info:
            verify_signature(BODY, header(t=t), [SECRET], now=NOW)
        assert reason(exc_info) == f"Timestamp outside the tolerance zone ({t})"

    def test_tolerance_boundary(self):
        verify_signature(BODY, header(t=NOW - 300), [SECRET], now=NOW)
        with pytest.raises(InvalidSignature, match="tolerance"):
            verify_signature(BODY, header(t=NOW - 301), [SECRET], now=NOW)

    def test_custom_tolerance(self):
        verify_signature(BODY, header(t=NOW - 500), [SECRET], now=NOW, tolerance=600)
        with pytest.raises(InvalidSignature, match="tolerance"):
            verify_signature(BODY, header(t=NOW - 61), [SECRET], now=NOW, tolerance=60)

    def test_zero_tolerance_disables_the_check(self):
        verify_signature(BODY, header(t=NOW - 86_400), [SECRET], now=NOW, tolerance=0)

    def test_a_timestamp_beyond_the_tolerance_in_the_future_is_refused(self):
        # stripe-python accepts any future timestamp; the hub refuses the same skew both ways.
        with pytest.raises(InvalidSignature, match="tolerance"):
            verify_signature(BODY, header(t=NOW + 3_600), [SECRET], now=NOW)

    def test_a_small_forward_clock_skew_is_accepted(self):
        verify_signature(BODY, header(t=NOW + 60), [SECRET], now=NOW)

    def test_a_400_digit_timestamp_is_an_invalid_signature_not_an_overflow(self):
        with pytest.raises(InvalidSignature, match="Unable to extract"):
            verify_signature(BODY, f"t={'9' * 400},v1={'0' * 64}", [SECRET], now=NOW)

    def test_signature_is_checked_before_the_timestamp(self):
        # A stale request with a bad signature reports the signature, as Stripe does.
        with pytest.raises(InvalidSignature, match="No signatures found matching"):
            verify_signature(BODY, header(secret="whsec_other", t=NOW - 1_000), [SECRET], now=NOW)

    def test_defaults_to_the_real_clock(self):
        import time

        verify_signature(BODY, header(t=int(time.time())), [SECRET])
        with pytest.raises(InvalidSignature, match="tolerance"):
            verify_signature(BODY, header(t=int(time.time()) - 1_000), [SECRET])


class TestParseEvent:
    def test_valid_event(self):
        event = parse_event(BODY)
        assert event.external_id == "evt_1Test"
        assert event.type == "invoice.paid"
        assert event.subject == "invoice:in_123"
        assert event.occurred_at == dt.datetime.fromtimestamp(NOW - 5, tz=dt.UTC)
        assert event.payload["data"]["object"]["status"] == "paid"

    @pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe"])
    def test_invalid_json(self, body):
        with pytest.raises(MalformedPayload, match="not valid JSON"):
            parse_event(body)

    @pytest.mark.parametrize("body", [b"[]", b'"event"', b"42", b"null"])
    def test_not_an_object(self, body):
        with pytest.raises(MalformedPayload, match="not an event object"):
            parse_event(body)

    @pytest.mark.parametrize(
        ("path", "message"),
        [
            (("id",), "id: missing"),
            (("type",), "type: missing"),
            (("created",), "created: missing"),
            (("data",), "data: missing"),
            (("data", "object"), "data.object: missing"),
            (("data", "object", "id"), "data.object.id: missing"),
            (("data", "object", "object"), "data.object.object: missing"),
        ],
    )
    def test_missing_field(self, path, message):
        event = json.loads(BODY)
        container = event
        for key in path[:-1]:
            container = container[key]
        del container[path[-1]]
        with pytest.raises(MalformedPayload, match=message):
            parse_event(json.dumps(event).encode())

    def test_not_an_event_id(self):
        event = json.loads(BODY) | {"id": "in_123"}
        with pytest.raises(MalformedPayload, match="not an event id"):
            parse_event(json.dumps(event).encode())

    def test_wrong_object_kind(self):
        event = json.loads(BODY) | {"object": "invoice"}
        with pytest.raises(MalformedPayload, match="expected 'event'"):
            parse_event(json.dumps(event).encode())

    def test_created_must_be_integer_seconds(self):
        event = json.loads(BODY) | {"created": "2025-01-01"}
        with pytest.raises(MalformedPayload, match="created"):
            parse_event(json.dumps(event).encode())

    def test_thin_event_rejected(self):
        thin = {
            "id": "evt_test_65R9Ijk8",
            "object": "v2.core.event",
            "type": "v1.billing.meter.error_report_triggered",
            "created": "2024-09-17T06:20:52.246Z",
            "related_object": {"id": "mtr_123", "type": "billing.meter", "url": "/v1/billing/meters/mtr_123"},
        }
        with pytest.raises(MalformedPayload, match="thin"):
            parse_event(json.dumps(thin).encode())


class TestReceiver:
    def test_reads_the_header_case_insensitively(self):
        receiver = StripeWebhookReceiver(tolerance=0)
        for name in ("Stripe-Signature", "stripe-signature", "STRIPE-SIGNATURE"):
            receiver.verify(
                body=BODY, headers={"Content-Type": "application/json", name: header()}, secrets=[SECRET]
            )

    def test_missing_header(self):
        with pytest.raises(InvalidSignature, match="Missing"):
            StripeWebhookReceiver().verify(body=BODY, headers={}, secrets=[SECRET])

    def test_stale_request_rejected_with_the_default_tolerance(self):
        with pytest.raises(InvalidSignature, match="tolerance"):
            StripeWebhookReceiver().verify(
                body=BODY, headers={"Stripe-Signature": header()}, secrets=[SECRET]
            )

    def test_parse_returns_one_event(self):
        [event] = StripeWebhookReceiver().parse(BODY)
        assert event.subject == "invoice:in_123"

    def test_registered_by_the_connector_module(self):
        from connectors import registry
        from connectors.stripe import connector

        assert isinstance(registry.webhook_receiver("stripe"), StripeWebhookReceiver)
        assert "invoice.paid" in connector.HANDLED_EVENT_TYPES
