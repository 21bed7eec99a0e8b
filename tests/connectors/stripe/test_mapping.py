"""Stripe -> canonical mapping, for both invoice shapes (legacy and 2025-03-31.basil).

The fixtures are written by hand from Stripe's API reference, independently of the
sandbox, so a shared misunderstanding cannot make both agree.
"""

from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal

import pytest

from canonical.contracts import Address, InvoiceV1, SourceRef, TaxId
from connectors.errors import MappingError
from connectors.stripe.mapping import (
    customer_from_stripe,
    invoice_from_stripe,
    invoice_shape,
    payment_from_stripe_invoice,
)

CREATED = 1_717_000_000  # 2024-05-29T16:26:40Z
FINALIZED = 1_717_000_100
DUE = 1_719_592_000  # 2024-06-28
PAID = 1_717_100_000
VOIDED = 1_717_200_000
RATE = {
    "id": "txr_Vat19",
    "object": "tax_rate",
    "percentage": 19.0,
    "inclusive": False,
    "display_name": "VAT",
}


def _line(shape, index, description, quantity, unit, tax, *, inclusive=False, rate=RATE):
    net = quantity * unit
    amount = net + tax if inclusive else net
    line = {
        "id": f"il_{index}",
        "object": "line_item",
        "amount": amount,
        "currency": "eur",
        "description": description,
        "discount_amounts": [],
        "period": {"start": CREATED, "end": DUE},
        "quantity": quantity,
    }
    if shape == "basil":
        line["pricing"] = {
            "type": "price_details",
            "price_details": {"price": f"price_{index}", "product": f"prod_{index}"},
            "unit_amount_decimal": str(unit),
        }
        line["parent"] = {
            "type": "subscription_item_details",
            "subscription_item_details": {"subscription": "sub_1"},
        }
        line["taxes"] = (
            [
                {
                    "amount": tax,
                    "tax_behavior": "inclusive" if inclusive else "exclusive",
                    "tax_rate_details": {"tax_rate": rate["id"] if isinstance(rate, dict) else rate},
                    "taxability_reason": "standard_rated",
                    "taxable_amount": net,
                    "type": "tax_rate_details",
                }
            ]
            if rate
            else []
        )
    else:
        line["amount_excluding_tax"] = net
        line["price"] = {
            "id": f"price_{index}",
            "object": "price",
            "product": f"prod_{index}",
            "unit_amount": unit,
            "type": "recurring",
        }
        line["subscription"] = "sub_1"
        line["tax_amounts"] = (
            [
                {
                    "amount": tax,
                    "inclusive": inclusive,
                    "tax_rate": rate["id"] if isinstance(rate, dict) else rate,
                }
            ]
            if rate
            else []
        )
        line["tax_rates"] = [rate] if isinstance(rate, dict) else []
    return line


def make_invoice(shape, *, currency="eur", lines=None, status="open", inclusive=False, rate=RATE):
    """An invoice with the same business content rendered in either shape.

    Basil lines name their tax rate by id only; legacy lines also embed the rate
    objects in ``tax_rates``. ``expanded`` (below) makes basil carry the same facts.
    """
    specs = lines or [("Pro plan", 2, 5000, 1900), ("Setup", 1, 2500, 475)]
    rendered = [_line(shape, i, *spec, inclusive=inclusive, rate=rate) for i, spec in enumerate(specs, 1)]
    for line in rendered:
        line["currency"] = currency
    net = sum(quantity * unit for _, quantity, unit, _ in specs)
    tax = sum(spec[3] for spec in specs)
    invoice = {
        "id": "in_1Test",
        "object": "invoice",
        "customer": "cus_Test",
        "customer_name": "Acme GmbH",
        "customer_email": "billing@acme.example",
        "customer_address": {
            "line1": "1 Main St",
            "line2": None,
            "city": "Berlin",
            "postal_code": "10115",
            "state": None,
            "country": "DE",
        },
        "customer_tax_ids": [{"type": "eu_vat", "value": "DE123456789"}],
        "currency": currency,
        "status": status,
        "number": "ABCD-0001",
        "created": CREATED,
        "due_date": DUE,
        "amount_due": net + tax,
        "amount_paid": net + tax if status == "paid" else 0,
        "amount_remaining": 0 if status == "paid" else net + tax,
        "subtotal": net + tax if inclusive else net,
        "subtotal_excluding_tax": net,
        "total": net + tax,
        "total_excluding_tax": net,
        "total_discount_amounts": [],
        "status_transitions": {
            "finalized_at": FINALIZED,
            "paid_at": PAID if status == "paid" else None,
            "voided_at": VOIDED if status == "void" else None,
            "marked_uncollectible_at": None,
        },
        "lines": {
            "object": "list",
            "data": rendered,
            "has_more": False,
            "url": "/v1/invoices/in_1Test/lines",
        },
    }
    taxes_behaviour = "inclusive" if inclusive else "exclusive"
    if shape == "basil":
        invoice["parent"] = {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": "sub_1"},
        }
        invoice["total_taxes"] = (
            [
                {
                    "amount": tax,
                    "tax_behavior": taxes_behaviour,
                    "tax_rate_details": {"tax_rate": RATE["id"]},
                    "taxability_reason": "standard_rated",
                    "taxable_amount": net,
                    "type": "tax_rate_details",
                }
            ]
            if rate
            else []
        )
    else:
        invoice["subscription"] = "sub_1"
        invoice["tax"] = tax if rate else None
        invoice["total_tax_amounts"] = (
            [{"amount": tax, "inclusive": inclusive, "tax_rate": RATE["id"]}] if rate else []
        )
        invoice["payment_intent"] = "pi_1Test"
        invoice["charge"] = "ch_1Test" if status == "paid" else None
    return invoice


BOTH = pytest.mark.parametrize("shape", ["legacy", "basil"])


def expanded(invoice):
    """The basil invoice as fetched with ``expand[]=lines.data.taxes.tax_rate_details.tax_rate``."""
    for line in invoice["lines"]["data"]:
        for tax in line.get("taxes", ()):
            tax["tax_rate_details"]["tax_rate"] = RATE
    return invoice


class TestInvoiceShapes:
    def test_shape_detection(self):
        assert invoice_shape(make_invoice("legacy")) == "legacy"
        assert invoice_shape(make_invoice("basil")) == "basil"

    def test_both_shapes_give_the_same_canonical_invoice(self):
        legacy = invoice_from_stripe(make_invoice("legacy"))
        basil = invoice_from_stripe(expanded(make_invoice("basil")))
        assert legacy == basil

    def test_only_the_unexpanded_tax_rate_differs(self):
        legacy = invoice_from_stripe(make_invoice("legacy"))
        basil = invoice_from_stripe(make_invoice("basil"))
        assert basil.model_copy(update={"lines": legacy.lines}) == legacy
        assert [line.tax_rate for line in basil.lines] == [None, None]

    @BOTH
    def test_usd_invoice(self, shape):
        invoice = invoice_from_stripe(make_invoice(shape, currency="usd"))
        assert isinstance(invoice, InvoiceV1)
        assert invoice.source == SourceRef(system="stripe", external_id="in_1Test")
        assert invoice.number == "ABCD-0001"
        assert invoice.currency == "USD"
        assert invoice.status == "open"
        assert invoice.issued_on == dt.date(2024, 5, 29)
        assert invoice.due_on == dt.date(2024, 6, 28)
        assert (invoice.subtotal, invoice.tax, invoice.total) == (12500, 2375, 14875)
        assert invoice.amount_paid == 0
        assert invoice.paid_at is None and invoice.voided_at is None
        assert invoice.subscription_ref == "sub_1"
        first, second = invoice.lines
        assert first.source_line_id == "il_1"
        assert first.description == "Pro plan"
        assert first.quantity == Decimal(2)
        assert (first.amount, first.tax_amount) == (10000, 1900)
        assert (second.amount, second.tax_amount) == (2500, 475)
        assert first.product_ref == "prod_1" and first.price_ref == "price_1"
        assert first.period_start == dt.date(2024, 5, 29) and first.period_end == dt.date(2024, 6, 28)

    @BOTH
    def test_customer_snapshot(self, shape):
        customer = invoice_from_stripe(make_invoice(shape)).customer
        assert customer.source == SourceRef(system="stripe", external_id="cus_Test")
        assert customer.display_name == "Acme GmbH"
        assert customer.email == "billing@acme.example"
        assert customer.address == Address(
            line1="1 Main St", city="Berlin", postal_code="10115", country="DE"
        )
        assert customer.tax_ids == (TaxId(type="eu_vat", value="DE123456789"),)

    @BOTH
    def test_customer_name_falls_back_to_email_then_id(self, shape):
        raw = make_invoice(shape) | {"customer_name": None}
        assert invoice_from_stripe(raw).customer.display_name == "billing@acme.example"
        raw |= {"customer_email": None}
        assert invoice_from_stripe(raw).customer.display_name == "cus_Test"

    @BOTH
    def test_expanded_customer(self, shape):
        raw = make_invoice(shape) | {"customer": {"id": "cus_Test", "object": "customer"}}
        assert invoice_from_stripe(raw).customer.source.external_id == "cus_Test"

    @BOTH
    def test_issued_on_falls_back_to_created(self, shape):
        raw = make_invoice(shape)
        raw["status_transitions"]["finalized_at"] = None
        raw["created"] = 1_704_067_199  # 2023-12-31T23:59:59Z: the UTC day counts
        assert invoice_from_stripe(raw).issued_on == dt.date(2023, 12, 31)


class TestCurrencies:
    @BOTH
    def test_jpy_amounts_are_unchanged_integers(self, shape):
        raw = make_invoice(shape, currency="jpy", lines=[("Seat", 3, 1500, 450)])
        invoice = invoice_from_stripe(raw)
        assert invoice.currency == "JPY"
        assert (invoice.subtotal, invoice.tax, invoice.total) == (4500, 450, 4950)
        assert invoice.lines[0].amount == 4500
        assert all(isinstance(v, int) for v in (invoice.subtotal, invoice.tax, invoice.total))

    @BOTH
    def test_kwd_three_decimals(self, shape):
        # KWD 1.250 x 2 = 2.500, 5 % tax 0.125: Stripe sends 1250 / 2500 / 125.
        raw = make_invoice(shape, currency="kwd", lines=[("Support", 2, 1250, 125)])
        invoice = invoice_from_stripe(raw)
        assert invoice.currency == "KWD"
        assert (invoice.subtotal, invoice.tax, invoice.total) == (2500, 125, 2625)

    def test_same_content_same_result_in_jpy(self):
        lines = [("Seat", 3, 1500, 450)]
        assert invoice_from_stripe(
            make_invoice("legacy", currency="jpy", lines=lines)
        ) == invoice_from_stripe(expanded(make_invoice("basil", currency="jpy", lines=lines)))

    @BOTH
    def test_unknown_currency_rejected(self, shape):
        with pytest.raises(MappingError, match=r"invoice\.currency: unknown currency 'xyz'"):
            invoice_from_stripe(make_invoice(shape, currency="xyz"))


class TestTaxes:
    @BOTH
    def test_tax_rate_from_expanded_rate(self, shape):
        raw = make_invoice(shape)
        if shape == "basil":
            # Basil lines only carry the rate id unless it is expanded.
            raw = expanded(raw)
        invoice = invoice_from_stripe(raw)
        assert [str(line.tax_rate) for line in invoice.lines] == ["19", "19"]

    def test_stacked_rates_add_up(self):
        state = {"id": "txr_State", "object": "tax_rate", "percentage": 6.25}
        county = {"id": "txr_County", "object": "tax_rate", "percentage": 2}
        raw = make_invoice("legacy", currency="usd", lines=[("Gadget", 1, 10000, 825)])
        line = raw["lines"]["data"][0]
        line["tax_amounts"] = [
            {"amount": 625, "inclusive": False, "tax_rate": "txr_State"},
            {"amount": 200, "inclusive": False, "tax_rate": "txr_County"},
        ]
        line["tax_rates"] = [state, county]
        assert str(invoice_from_stripe(raw).lines[0].tax_rate) == "8.25"

    def test_basil_tax_rate_unknown_without_expansion(self):
        invoice = invoice_from_stripe(make_invoice("basil"))
        assert [line.tax_rate for line in invoice.lines] == [None, None]

    @BOTH
    def test_untaxed_invoice(self, shape):
        raw = make_invoice(shape, lines=[("Pro plan", 2, 5000, 0)], rate=None)
        invoice = invoice_from_stripe(raw)
        assert (invoice.subtotal, invoice.tax, invoice.total) == (10000, 0, 10000)
        assert invoice.lines[0].tax_amount == 0 and invoice.lines[0].tax_rate is None

    @BOTH
    def test_inclusive_tax_lines_are_net(self, shape):
        # Gross 119.00 with 19 % inclusive VAT: net 100.00, tax 19.00.
        raw = make_invoice(shape, lines=[("Gross priced", 1, 10000, 1900)], inclusive=True)
        invoice = invoice_from_stripe(raw)
        assert (invoice.lines[0].amount, invoice.lines[0].tax_amount) == (10000, 1900)
        assert (invoice.subtotal, invoice.tax, invoice.total) == (10000, 1900, 11900)

    def test_same_result_for_inclusive_tax_in_both_shapes(self):
        lines = [("Gross priced", 1, 10000, 1900)]
        legacy = make_invoice("legacy", lines=lines, inclusive=True)
        basil = expanded(make_invoice("basil", lines=lines, inclusive=True))
        assert invoice_from_stripe(legacy) == invoice_from_stripe(basil)

    @BOTH
    def test_inconsistent_tax_rejected(self, shape):
        raw = make_invoice(shape)
        raw["lines"]["data"][0]["taxes" if shape == "basil" else "tax_amounts"][0]["amount"] = 1899
        with pytest.raises(MappingError, match="line taxes add up to 2374, invoice tax is 2375"):
            invoice_from_stripe(raw)

    @BOTH
    def test_lines_not_matching_subtotal_rejected(self, shape):
        raw = make_invoice(shape)
        raw["subtotal_excluding_tax"] += 1
        raw["subtotal"] += 1
        raw["total"] += 1
        with pytest.raises(
            MappingError, match=r"invoice\.subtotal_excluding_tax: 12501 != sum of line amounts"
        ):
            invoice_from_stripe(raw)

    @BOTH
    def test_discount_rejected(self, shape):
        raw = make_invoice(shape)
        raw["total_discount_amounts"] = [{"amount": 500, "discount": "di_1"}]
        with pytest.raises(
            MappingError, match="total_discount_amounts: discounted invoices are not supported"
        ):
            invoice_from_stripe(raw)


class TestLifecycle:
    @BOTH
    def test_paid(self, shape):
        invoice = invoice_from_stripe(make_invoice(shape, status="paid"))
        assert invoice.status == "paid"
        assert invoice.amount_paid == 14875
        assert invoice.paid_at == dt.datetime.fromtimestamp(PAID, tz=dt.UTC)

    @BOTH
    def test_void(self, shape):
        invoice = invoice_from_stripe(make_invoice(shape, status="void"))
        assert invoice.status == "void"
        assert invoice.voided_at == dt.datetime.fromtimestamp(VOIDED, tz=dt.UTC)

    @BOTH
    def test_uncollectible(self, shape):
        assert invoice_from_stripe(make_invoice(shape, status="uncollectible")).status == "uncollectible"

    @BOTH
    def test_draft_rejected(self, shape):
        raw = make_invoice(shape, status="draft") | {"number": None}
        with pytest.raises(MappingError, match=r"invoice\.status: .*draft.*finalized invoices only"):
            invoice_from_stripe(raw)

    @BOTH
    def test_has_more_rejected(self, shape):
        raw = make_invoice(shape)
        raw["lines"]["has_more"] = True
        with pytest.raises(MappingError) as exc_info:
            invoice_from_stripe(raw)
        message = str(exc_info.value)
        assert "invoice.lines.has_more" in message
        assert "not implemented yet" in message


class TestErrorsNameTheField:
    @BOTH
    def test_missing_line_amount(self, shape):
        raw = make_invoice(shape)
        del raw["lines"]["data"][1]["amount"]
        with pytest.raises(
            MappingError, match=r"stripe invoice\.lines\.data\[1\]\.amount: expected an integer"
        ):
            invoice_from_stripe(raw)

    def test_float_amount_rejected(self):
        raw = make_invoice("basil")
        raw["total"] = 148.75
        with pytest.raises(MappingError, match=r"invoice\.total: expected an integer, got 148\.75"):
            invoice_from_stripe(raw)

    def test_bad_country(self):
        raw = make_invoice("legacy")
        raw["customer_address"]["country"] = "Germany"
        with pytest.raises(MappingError, match=r"invoice\.customer.*country"):
            invoice_from_stripe(raw)

    def test_no_lines(self):
        raw = make_invoice("basil")
        raw["lines"]["data"] = []
        with pytest.raises(MappingError, match=r"invoice\.lines\.data: the invoice has no lines"):
            invoice_from_stripe(raw)

    def test_mapping_error_is_permanent(self):
        from connectors.errors import Permanent

        with pytest.raises(Permanent):
            invoice_from_stripe(make_invoice("basil", status="draft"))


class TestLineDescriptions:
    @BOTH
    def test_description_falls_back_to_product_then_price(self, shape):
        raw = make_invoice(shape)
        raw["lines"]["data"][0]["description"] = None
        assert invoice_from_stripe(raw).lines[0].description == "prod_1"

    def test_null_quantity_is_one(self):
        raw = make_invoice("legacy", lines=[("Fee", 1, 700, 133)])
        raw["lines"]["data"][0]["quantity"] = None
        assert invoice_from_stripe(raw).lines[0].quantity == Decimal(1)


class TestCustomer:
    CUSTOMER = {
        "id": "cus_NffrFeUfNV2Hib",
        "object": "customer",
        "address": {
            "city": "Tokyo",
            "country": "jp",
            "line1": "1-1 Chiyoda",
            "line2": "",
            "postal_code": "100-0001",
            "state": "",
        },
        "currency": "jpy",
        "email": "jenny.rosen@example.com",
        "name": "Jenny Rosen",
        "metadata": {},
        "tax_ids": {
            "object": "list",
            "data": [{"id": "txi_1", "object": "tax_id", "type": "jp_cn", "value": "1234567890123"}],
            "has_more": False,
            "url": "/v1/customers/cus_NffrFeUfNV2Hib/tax_ids",
        },
    }

    def test_full_customer(self):
        customer = customer_from_stripe(self.CUSTOMER)
        assert customer.source == SourceRef(system="stripe", external_id="cus_NffrFeUfNV2Hib")
        assert customer.display_name == "Jenny Rosen"
        assert customer.email == "jenny.rosen@example.com"
        assert customer.address == Address(
            line1="1-1 Chiyoda", city="Tokyo", postal_code="100-0001", country="JP"
        )
        assert customer.tax_ids == (TaxId(type="jp_cn", value="1234567890123"),)
        assert customer.currency == "JPY"

    def test_minimal_customer(self):
        customer = customer_from_stripe(
            {
                "id": "cus_1",
                "object": "customer",
                "name": None,
                "email": None,
                "address": None,
                "currency": None,
            }
        )
        assert customer.display_name == "cus_1"
        assert customer.address is None and customer.tax_ids == () and customer.currency is None

    def test_tax_ids_as_plain_list(self):
        raw = copy.deepcopy(self.CUSTOMER) | {"tax_ids": [{"type": "eu_vat", "value": "DE1"}]}
        assert customer_from_stripe(raw).tax_ids == (TaxId(type="eu_vat", value="DE1"),)

    def test_deleted_customer_rejected(self):
        with pytest.raises(MappingError, match="customer.deleted"):
            customer_from_stripe({"id": "cus_1", "object": "customer", "deleted": True})

    def test_unknown_currency_rejected(self):
        with pytest.raises(MappingError, match=r"customer\.currency: unknown currency"):
            customer_from_stripe(self.CUSTOMER | {"currency": "zzz"})


class TestPayment:
    def test_legacy_paid_invoice_uses_the_payment_intent(self):
        payment = payment_from_stripe_invoice(make_invoice("legacy", status="paid"))
        assert payment is not None
        assert payment.source == SourceRef(system="stripe", external_id="pi_1Test")
        assert payment.invoice == SourceRef(system="stripe", external_id="in_1Test")
        assert payment.currency == "EUR"
        assert payment.amount == 14875
        assert payment.paid_at == dt.datetime.fromtimestamp(PAID, tz=dt.UTC)

    def test_charge_when_no_payment_intent(self):
        raw = make_invoice("legacy", status="paid") | {"payment_intent": None}
        assert payment_from_stripe_invoice(raw).source.external_id == "ch_1Test"

    def test_basil_payments_list(self):
        raw = make_invoice("basil", status="paid")
        raw["payments"] = {
            "object": "list",
            "data": [
                {
                    "id": "inpay_0",
                    "object": "invoice_payment",
                    "status": "canceled",
                    "payment": {"type": "payment_intent", "payment_intent": "pi_Failed"},
                },
                {
                    "id": "inpay_1",
                    "object": "invoice_payment",
                    "status": "paid",
                    "payment": {"type": "payment_intent", "payment_intent": "pi_Basil"},
                },
            ],
            "has_more": False,
        }
        assert payment_from_stripe_invoice(raw).source.external_id == "pi_Basil"

    def test_falls_back_to_invoice_id(self):
        payment = payment_from_stripe_invoice(make_invoice("basil", status="paid"))
        assert payment.source.external_id == "in_1Test:paid"

    @pytest.mark.parametrize("status", ["open", "void", "uncollectible", "draft"])
    def test_none_when_not_paid(self, status):
        assert payment_from_stripe_invoice(make_invoice("legacy", status=status)) is None

    def test_none_when_nothing_was_paid(self):
        raw = make_invoice("basil", status="paid") | {"amount_paid": 0}
        assert payment_from_stripe_invoice(raw) is None

    def test_jpy_payment(self):
        raw = make_invoice("basil", status="paid", currency="jpy", lines=[("Seat", 3, 1500, 450)])
        payment = payment_from_stripe_invoice(raw)
        assert (payment.currency, payment.amount) == ("JPY", 4950)

    def test_paid_at_required(self):
        raw = make_invoice("legacy", status="paid")
        raw["status_transitions"]["paid_at"] = None
        with pytest.raises(MappingError, match=r"invoice\.status_transitions\.paid_at"):
            payment_from_stripe_invoice(raw)
