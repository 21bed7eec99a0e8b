import datetime as dt
from decimal import Decimal

import pytest

from canonical.contracts import CustomerV1, InvoiceLineV1, InvoiceV1
from connectors.errors import MappingError
from connectors.tryton import mapping


def customer(**overrides):
    values = dict(source=dict(system="stripe", external_id="cus_123"), canonical_id=42, display_name="Ada Ltd")
    values.update(overrides)
    return CustomerV1.model_validate(values)


def line(amount, quantity="1", tax_amount=0, **overrides):
    return InvoiceLineV1(description="Seat", quantity=Decimal(quantity), amount=amount, tax_amount=tax_amount,
                         **overrides)


def invoice(currency, lines, **overrides):
    subtotal = sum(item.amount for item in lines)
    tax = sum(item.tax_amount for item in lines)
    values = dict(source=dict(system="stripe", external_id="in_1"), number="INV-7", customer=customer(),
                  currency=currency, status="open", issued_on=dt.date(2026, 11, 2), subtotal=subtotal,
                  tax=tax, total=subtotal + tax, lines=lines)
    values.update(overrides)
    return InvoiceV1.model_validate(values)


def test_party_code_uses_the_canonical_id():
    assert mapping.party_code(customer()) == "HUB-42"


def test_party_code_falls_back_to_the_source_ref():
    assert mapping.party_code(customer(canonical_id=None)) == "stripe:cus_123"


def test_party_values_carry_address_and_email():
    values = mapping.party_values(customer(
        email="ap@ada.example",
        address=dict(line1="1 Main St", line2="Floor 2", city="Springfield", postal_code="12345", country="US"),
    ))
    assert values["name"] == "Ada Ltd"
    assert values["code"] == "HUB-42"
    assert values["addresses"] == [["create", [
        {"street": "1 Main St\nFloor 2", "postal_code": "12345", "city": "Springfield"}]]]
    assert values["contact_mechanisms"] == [["create", [{"type": "email", "value": "ap@ada.example"}]]]


def test_party_values_always_create_an_address():
    values = mapping.party_values(customer())
    assert values["addresses"] == [["create", [{}]]]
    assert "contact_mechanisms" not in values


def test_unit_price_is_exact_when_the_division_is():
    price = mapping.line_price(line(2500, quantity="4"), "USD")
    assert (price.quantity, price.unit_price, price.exact) == (Decimal(4), Decimal("6.25"), True)
    assert price.description == "Seat"


def test_unit_price_at_four_decimals_is_still_exact():
    price = mapping.line_price(line(1, quantity="16"), "USD")  # 0.01 / 16 = 0.000625: 6 decimals
    assert not price.exact
    price = mapping.line_price(line(1, quantity="4"), "USD")  # 0.0025
    assert (price.unit_price, price.exact) == (Decimal("0.0025"), True)


def test_inexact_unit_price_falls_back_to_quantity_one():
    price = mapping.line_price(line(1000, quantity="3"), "USD")
    assert (price.quantity, price.unit_price, price.exact) == (Decimal(1), Decimal("10.00"), False)
    assert price.description == "Seat (quantity 3)"


def test_zero_quantity_falls_back_to_quantity_one():
    price = mapping.line_price(line(0, quantity="0"), "USD")
    assert (price.quantity, price.unit_price) == (Decimal(1), Decimal(0))


def test_fractional_quantity():
    price = mapping.line_price(line(375, quantity="1.5"), "EUR")
    assert (price.quantity, price.unit_price, price.exact) == (Decimal("1.5"), Decimal("2.5"), True)


def test_zero_decimal_currency_amounts_are_whole_yen():
    price = mapping.line_price(line(1500, quantity="3"), "JPY")
    assert (price.unit_price, price.exact) == (Decimal(500), True)
    price = mapping.line_price(line(1000, quantity="3"), "JPY")
    assert (price.quantity, price.unit_price) == (Decimal(1), Decimal(1000))


def test_three_decimal_currency_amounts():
    price = mapping.line_price(line(1234, quantity="2"), "KWD")
    assert (price.unit_price, price.exact) == (Decimal("0.617"), True)
    assert mapping.line_price(line(1235, quantity="2"), "KWD").unit_price == Decimal("0.6175")


TAXES = [(1, Decimal("0.10")), (2, Decimal("0.20")), (3, Decimal("0.07"))]


def test_no_tax_when_tax_amount_is_zero():
    assert mapping.choose_tax(line(1000), TAXES, label="l1") is None


def test_tax_chosen_by_rate():
    assert mapping.choose_tax(line(1000, tax_amount=100), TAXES, label="l1") == 1
    assert mapping.choose_tax(line(1000, tax_amount=200), TAXES, label="l1") == 2


def test_tax_within_one_minor_unit():
    assert mapping.choose_tax(line(1005, tax_amount=101), TAXES, label="l1") == 1  # 100.5 -> 101
    assert mapping.choose_tax(line(1005, tax_amount=100), TAXES, label="l1") == 1
    assert mapping.choose_tax(line(-1000, tax_amount=-70), TAXES, label="l1") == 3


def test_declared_rate_breaks_a_tie():
    # On 10 minor units, 10 % and 20 % both land within one unit of 1.
    assert mapping.choose_tax(line(10, tax_amount=1), TAXES, label="l1") == 1
    assert mapping.choose_tax(line(10, tax_amount=1, tax_rate=Decimal(20)), TAXES, label="l1") == 2


def test_no_fitting_tax_names_the_line():
    with pytest.raises(MappingError, match=r"'li_9'.*10 %, 20 %, 7 %"):
        mapping.choose_tax(line(1000, tax_amount=190), TAXES, label="li_9")


def test_tax_on_zero_decimal_and_three_decimal_currencies():
    assert mapping.choose_tax(line(1234, tax_amount=123), TAXES, label="jpy") == 1  # 123.4 yen
    assert mapping.choose_tax(line(12345, tax_amount=1235), TAXES, label="kwd") == 1  # 1.2345 KWD


def test_invoice_line_values():
    values = mapping.invoice_line_values(line(2500, quantity="4", tax_amount=250), "USD",
                                         company_id=1, currency_id=2, account_id=3, tax_id=4)
    assert values == {
        "type": "line", "company": 1, "currency": 2, "description": "Seat", "quantity": 4.0,
        "unit_price": Decimal("6.25"), "account": 3, "taxes": [["add", [4]]],
    }
    assert mapping.invoice_line_values(line(100), "USD", company_id=1, currency_id=2, account_id=3,
                                       tax_id=None)["taxes"] == []


def test_an_invoice_line_of_a_catalog_product_carries_the_product_and_its_unit():
    values = mapping.invoice_line_values(line(2500, quantity="4"), "USD", company_id=1, currency_id=2,
                                         account_id=3, tax_id=None, product=(41, 7))
    assert (values["product"], values["unit"], values["account"], values["description"]) == (41, 7, 3, "Seat")
    free_text = mapping.invoice_line_values(line(2500), "USD", company_id=1, currency_id=2, account_id=3, tax_id=None)
    assert "product" not in free_text and "unit" not in free_text


def test_invoice_values_reference_the_source_invoice():
    values = mapping.invoice_values(invoice("USD", [line(1000)]), company_id=1, party_id=2, address_id=3,
                                    currency_id=4, receivable_account_id=5, journal_id=6, lines=[{"x": 1}])
    assert values["reference"] == "in_1"
    assert values["description"] == "stripe invoice INV-7"
    assert values["invoice_date"] == dt.date(2026, 11, 2)
    assert (values["type"], values["company"], values["account"], values["journal"]) == ("out", 1, 5, 6)
    assert values["lines"] == [["create", [{"x": 1}]]]


def test_totals_match_in_major_units():
    assert mapping.totals_match(Decimal("11.00"), invoice("USD", [line(1000, tax_amount=100)]))
    assert not mapping.totals_match(Decimal("11.01"), invoice("USD", [line(1000, tax_amount=100)]))
    assert mapping.totals_match(Decimal("1100"), invoice("JPY", [line(1000, tax_amount=100)]))
    assert mapping.totals_match(Decimal("1.100"), invoice("KWD", [line(1000, tax_amount=100)]))


def test_external_document():
    document = mapping.external_document({"id": 7, "number": "12", "state": "posted", "party": 3})
    assert (document.external_id, document.number, document.state) == ("7", "12", "posted")
    assert document.related == {"customer": "3"}
    assert mapping.external_document({"id": 8, "number": None, "state": "draft"}).number is None
