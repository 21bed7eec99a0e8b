"""Every shape billing sends: Stripe's own Python SDK declares which fields of an
Invoice, line item, CreditNote, credit note line, Refund and InvoicePayment may be
null (``Optional[...]`` in its typed resource classes). Each such field is tried
absent, null and present, in both API shapes the hub reads; the mapping must post
the object or refuse it with a MappingError naming the field — never crash."""

from __future__ import annotations

import copy
import random

import pytest
import stripe

from connectors.errors import MappingError
from connectors.stripe.adjustments import credit_note_from_stripe, refund_from_stripe
from connectors.stripe.mapping import (
    invoice_from_stripe,
    invoice_payment_from_stripe,
    payments_from_stripe_invoice,
)
from connectors.stripe.sandbox import LEGACY, StripeSandbox
from tests.conftest import WEBHOOK_SECRET

ABSENT = object()


def optional_fields(resource: type) -> list[str]:
    return sorted(name for name, kind in resource.__annotations__.items() if "Optional" in str(kind))


def _sandbox(shape):
    kwargs = {"api_version": LEGACY} if shape == "legacy" else {}
    return StripeSandbox(WEBHOOK_SECRET, seed=random.Random(shape).getrandbits(64), **kwargs)


def _documents(shape):
    billing = _sandbox(shape)
    customer = billing.customer("Shape Co", "shape@example.com")
    invoice = billing.finalize(billing.invoice(customer, [("Seats", 2, 1500), ("Setup", 1, 999)]))
    paid = billing.pay(invoice)
    refund = billing.refund(billing.payment_of(paid), 500)
    if shape == "basil":
        note = billing.credit_note(paid, lines=[(0, 1)], amount=300, refund=refund, credit_balance=True)
    else:  # a legacy note states no refund amount, so the rest is settled out of band
        note = billing.credit_note(paid, lines=[(0, 1)], amount=300, refund=refund, out_of_band_amount=1480)
    part, _ = billing.pay_part(invoice, 1000)
    return {"invoice": paid, "credit_note": note, "refund": refund, "invoice_payment": part}


def _variants(document, field, values):
    for value in values:
        variant = copy.deepcopy(document)
        if value is ABSENT:
            variant.pop(field, None)
        else:
            variant[field] = value
        yield value, variant


def _maps_or_refuses(function, document):
    try:
        return function(document)
    except MappingError as exc:
        assert str(exc).startswith("stripe "), exc  # a deliberate refusal names the field
        return exc


CASES = [
    ("invoice", stripe.Invoice, invoice_from_stripe),
    ("invoice", stripe.Invoice, payments_from_stripe_invoice),
    ("credit_note", stripe.CreditNote, credit_note_from_stripe),
    ("refund", stripe.Refund, refund_from_stripe),
    ("invoice_payment", stripe.InvoicePayment, invoice_payment_from_stripe),
]


@pytest.mark.parametrize("shape", ["basil", "legacy"])
@pytest.mark.parametrize(("kind", "resource", "function"), CASES, ids=lambda c: getattr(c, "__name__", c))
def test_every_optional_top_level_field_absent_or_null_maps_or_is_refused(shape, kind, resource, function):
    document = _documents(shape)[kind]
    assert not isinstance(_maps_or_refuses(function, document), MappingError)  # the object as sent posts
    for field in optional_fields(resource):
        for _value, variant in _variants(document, field, (ABSENT, None)):
            _maps_or_refuses(function, variant)


LINE_CASES = [
    ("invoice", stripe.InvoiceLineItem, invoice_from_stripe),
    ("credit_note", stripe.CreditNoteLineItem, credit_note_from_stripe),
]


@pytest.mark.parametrize("shape", ["basil", "legacy"])
@pytest.mark.parametrize(("kind", "resource", "function"), LINE_CASES, ids=lambda c: getattr(c, "__name__", c))
def test_every_optional_line_field_absent_or_null_maps_or_is_refused(shape, kind, resource, function):
    document = _documents(shape)[kind]
    for field in optional_fields(resource):
        for _value, line in _variants(document["lines"]["data"][0], field, (ABSENT, None)):
            variant = copy.deepcopy(document)
            variant["lines"]["data"][0] = line
            _maps_or_refuses(function, variant)


def test_a_line_whose_pricing_has_no_price_details_maps():
    invoice = _documents("basil")["invoice"]
    invoice["lines"]["data"][0]["pricing"] = {"type": "price_details", "price_details": None,
                                              "unit_amount_decimal": "1500"}
    mapped = invoice_from_stripe(invoice)
    assert (mapped.lines[0].price_ref, mapped.lines[0].product_ref, mapped.lines[0].description) == (
        None, None, "Seats")


@pytest.mark.parametrize("parent", ["invoice_item_details", "subscription_item_details"])
def test_both_line_parent_types_map(parent):
    invoice = _documents("basil")["invoice"]
    line = invoice["lines"]["data"][0]
    line["parent"] = {"type": parent, "invoice_item_details": None, "subscription_item_details": None,
                      parent: {"invoice_item": "ii_1", "proration": False, "proration_details": None,
                               "subscription": "sub_1", "subscription_item": "si_1"}}
    assert invoice_from_stripe(invoice).lines[0].amount == line["amount"]


@pytest.mark.parametrize("shape", ["basil", "legacy"])
def test_every_tax_shape_maps(shape):
    """Exclusive tax with a known rate, a rate Stripe does not expand (rate unknown),
    inclusive tax, and no tax at all."""
    invoice = _documents(shape)["invoice"]
    line = invoice["lines"]["data"][0]
    taxes_key = "taxes" if shape == "basil" else "tax_amounts"

    unknown = copy.deepcopy(invoice)
    entry = unknown["lines"]["data"][0][taxes_key][0]
    if shape == "basil":
        entry["tax_rate_details"] = None
    else:
        unknown["lines"]["data"][0]["tax_rates"] = []
    assert invoice_from_stripe(unknown).lines[0].tax_rate is None

    inclusive = copy.deepcopy(invoice)
    inclusive_line = inclusive["lines"]["data"][0]
    tax = inclusive_line[taxes_key][0]["amount"]
    if shape == "basil":
        inclusive_line["taxes"][0]["tax_behavior"] = "inclusive"
        inclusive["total_taxes"][0]["tax_behavior"] = "inclusive"
        inclusive["total_taxes"] = [
            {**inclusive["total_taxes"][0], "amount": tax, "tax_behavior": "inclusive"},
            {**inclusive["total_taxes"][0], "amount": inclusive["total_taxes"][0]["amount"] - tax,
             "tax_behavior": "exclusive"},
        ]
    else:
        inclusive_line["tax_amounts"][0]["inclusive"] = True
        inclusive_line["amount_excluding_tax"] = line["amount"]
        inclusive["total_tax_amounts"] = [
            {**inclusive["total_tax_amounts"][0], "amount": tax, "inclusive": True},
            {**inclusive["total_tax_amounts"][0], "amount": inclusive["total_tax_amounts"][0]["amount"] - tax},
        ]
    inclusive_line["amount"] = line["amount"] + tax
    inclusive["subtotal"] += tax
    mapped = invoice_from_stripe(inclusive)
    assert (mapped.lines[0].amount, mapped.lines[0].tax_amount, mapped.total) == (
        line["amount"], tax, invoice["total"])

    untaxed = _sandbox(shape)
    plain = untaxed.finalize(untaxed.invoice("cus_1", [("Item", 1, 1000)], tax_percent=None))
    assert invoice_from_stripe(plain).tax == 0


@pytest.mark.parametrize("shape", ["basil", "legacy"])
def test_credit_note_settlements_map(shape):
    billing = _sandbox(shape)
    invoice = billing.finalize(billing.invoice("cus_1", [("Seats", 4, 2500)]))
    before = credit_note_from_stripe(billing.credit_note(invoice, lines=[(0, 1)]))
    assert (before.pre_payment_amount, before.refund_amount, before.total) == (2750, 0, 2750)
    paid = billing.pay(invoice)
    refund = billing.refund(billing.payment_of(paid), 1000)
    note = billing.credit_note(paid, amount=2000, refund=refund, out_of_band_amount=700, credit_balance=True)
    if shape == "legacy":  # one ``refund`` id and no amounts: the split cannot be known
        with pytest.raises(MappingError, match="credit_note.refund"):
            credit_note_from_stripe(note)
        return
    mixed = credit_note_from_stripe(note)
    assert (mixed.refund_amount, mixed.out_of_band_amount, mixed.credit_balance_amount) == (1000, 700, 500)
    assert [ref.external_id for ref in mixed.refunds] == [refund["id"]]


def test_a_credit_note_whose_post_payment_part_nothing_settles_is_refused():
    billing = _sandbox("basil")
    paid = billing.pay(billing.finalize(billing.invoice("cus_1", [("Seats", 1, 2500)])))
    note = billing.credit_note(paid, amount=1000, credit_balance=True)
    note["customer_balance_transaction"] = None
    with pytest.raises(MappingError, match="customer_balance_transaction.*unaccounted"):
        credit_note_from_stripe(note)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("discount_amount", 100, "discount"), ("amount_shipping", 100, "shipping"), ("status", "draft", "status"),
    ("invoice", None, "invoice: missing"),
])
def test_credit_notes_refused_on_purpose(field, value, message):
    billing = _sandbox("basil")
    note = billing.credit_note(billing.finalize(billing.invoice("cus_1", [("Seats", 1, 2500)])), amount=500)
    note[field] = value
    with pytest.raises(MappingError, match=message):
        credit_note_from_stripe(note)


@pytest.mark.parametrize("kind", ["credit_note", "refund", "invoice_payment"])
def test_the_sdk_accepts_the_sandboxs_adjustment_webhooks(kind):
    billing = _sandbox("basil")
    document = _documents("basil")[kind]
    body, headers = billing.webhook_request(billing.event(f"{kind}.created", document))
    event = stripe.Webhook.construct_event(body.decode(), headers["Stripe-Signature"], WEBHOOK_SECRET)
    assert (event.data.object.object, event.data.object.id) == (kind, document["id"])
