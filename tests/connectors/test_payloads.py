"""Inbound bounds: what the database or the parser could not take is refused with a
reason that names the field, before anything is stored."""

import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canonical.contracts import INT64_MAX
from connectors.base import ReceivedEvent
from connectors.errors import InvalidSignature, MalformedPayload, MappingError
from connectors.hubspot.mapping import parse_time
from connectors.payloads import (
    MAX_DEPTH,
    _storable,
    _storable_failure,
    check_event,
    epoch_datetime,
    header_epoch,
    json_loads,
)
from connectors.stripe.mapping import invoice_from_stripe


def test_deep_nesting_is_malformed_not_a_recursion_error():
    with pytest.raises(MalformedPayload, match="nested deeper"):
        json_loads(b"[" * 10_000 + b"]" * 10_000)
    with pytest.raises(MalformedPayload, match="nested deeper"):
        json_loads(b"[" * (MAX_DEPTH + 2) + b"]" * (MAX_DEPTH + 2))


def test_a_nul_anywhere_is_refused_with_its_path():
    with pytest.raises(MalformedPayload, match=r"data\.object\.name: contains a NUL"):
        json_loads(json.dumps({"data": {"object": {"name": "a\u0000b"}}}).encode())
    with pytest.raises(MalformedPayload, match="key contains a NUL"):
        json_loads(json.dumps({"a\u0000": 1}).encode())


@pytest.mark.parametrize("value", [10**20, -1, 2**63, "1700000000", True, 1.5])
def test_timestamps_out_of_range_or_not_integers_name_the_field(value):
    with pytest.raises(MalformedPayload, match="created"):
        epoch_datetime(value, field="created")


def test_a_millisecond_timestamp_in_range_reads():
    assert epoch_datetime(1_700_000_000_000, field="t", millis=True) == dt.datetime(
        2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)


@pytest.mark.parametrize("raw", ["9" * 400, "-5", "1e9", "١٢٣", ""])
def test_timestamp_headers_must_be_a_few_ascii_digits(raw):
    with pytest.raises(InvalidSignature, match="X-Test"):
        header_epoch(raw, header="X-Test")


@pytest.mark.parametrize("field, event", [
    ("event id", ReceivedEvent(external_id="e" * 256, type="t", subject="x:1", payload={})),
    ("event type", ReceivedEvent(external_id="e", type="t" * 101, subject="x:1", payload={})),
    ("subject", ReceivedEvent(external_id="e", type="t", subject="x:" + "1" * 250, payload={})),
    ("event id", ReceivedEvent(external_id="e\x00", type="t", subject="x:1", payload={})),
])
def test_events_that_do_not_fit_the_inbox_are_malformed(field, event):
    with pytest.raises(MalformedPayload, match=field):
        check_event("stripe", event)


def _invoice(**changes):
    invoice = {
        "id": "in_1", "object": "invoice", "customer": "cus_1", "customer_name": "Ada", "currency": "usd",
        "status": "open", "created": 1_700_000_000, "subtotal": 100, "total": 100, "tax": 0,
        "lines": {"data": [{"id": "il_1", "amount": 100, "description": "Plan", "quantity": 1}]},
    }
    invoice.update(changes)
    return invoice


@pytest.mark.parametrize("changes, field", [
    ({"customer_name": "N" * 301}, "display_name"),
    ({"subtotal": 2**64, "total": 2**64}, "invoice.total"),
    ({"created": 10**20}, "created"),
    ({"customer_name": "bad\x00name"}, "display_name"),
])
def test_stripe_values_the_database_cannot_hold_are_mapping_errors_naming_the_field(changes, field):
    with pytest.raises(MappingError, match=field):
        invoice_from_stripe(_invoice(**changes))


def test_int64_bounds_hold_at_the_edge():
    with pytest.raises(MappingError, match="64-bit"):
        invoice_from_stripe(_invoice(total=INT64_MAX + 1))


def test_hubspot_epoch_properties_out_of_range_are_mapping_errors():
    with pytest.raises(MappingError, match="hubspot timestamp"):
        parse_time("9" * 15 + "0")
    with pytest.raises(MappingError, match="hubspot timestamp"):
        parse_time("9" * 400)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(alphabet="ab\x00", max_size=3),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(alphabet="k\x00", max_size=2), children,
                                                                      max_size=3),
    max_leaves=40,
)


def _nested(depth: int, leaf):
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@given(_json_values)
def test_the_quick_walk_refuses_exactly_what_the_reference_walk_refuses(value):
    try:
        _storable_failure(value)
        refused = False
    except MalformedPayload:
        refused = True
    assert _storable(value) is not refused


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1])
@pytest.mark.parametrize("leaf", [1, "x", [], {}, ("t",)])
def test_the_depth_limit_is_the_same_on_both_walks(depth, leaf):
    value = _nested(depth, leaf)
    try:
        _storable_failure(value)
        refused = False
    except MalformedPayload:
        refused = True
    assert _storable(value) is not refused
    assert refused == (depth + (1 if leaf == ("t",) else 0) > MAX_DEPTH)
