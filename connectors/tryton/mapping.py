"""Pure mapping between the hub's canonical contracts and Tryton values.

No I/O: the connector looks ids up and passes them in. Amounts in canonical
contracts are integers in minor units; Tryton takes Decimals in major units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from canonical.contracts import CustomerV1, InvoiceLineV1, InvoiceV1
from canonical.money import to_major
from connectors.base import ExternalDocument
from connectors.errors import MappingError

# Tryton's product price_decimal default: unit prices carry 4 decimals.
PRICE_DIGITS = 4
_PRICE_QUANTUM = Decimal(1).scaleb(-PRICE_DIGITS)


def party_code(customer: CustomerV1) -> str:
    """The ERP party code for a canonical customer.

    ``HUB-<canonical_id>`` once the hub has assigned an id (stable across source
    systems); before that, ``<system>:<external_id>`` of the source record. The two
    forms cannot collide (``HUB-`` never contains a colon). Tryton enforces unique
    party codes, so the code is the idempotency key for party creation. Note that a
    customer first seen without a canonical id and later with one maps to two codes.
    """
    if customer.canonical_id is not None:
        return f"HUB-{customer.canonical_id}"
    return f"{customer.source.system}:{customer.source.external_id}"


def party_values(customer: CustomerV1) -> dict[str, Any]:
    """Create values for ``party.party``: name, code, one address (always, because
    invoices need an invoice address), and the e-mail as a contact mechanism.
    The country is left out: the hub does not load Tryton's country table."""
    address = address_values(customer)
    values: dict[str, Any] = {
        "name": customer.display_name,
        "code": party_code(customer),
        "addresses": [["create", [address]]],
    }
    if customer.email:
        values["contact_mechanisms"] = [["create", [{"type": "email", "value": customer.email}]]]
    return values


PARENT_IDENTIFIER_PREFIX = "parent:"


def parent_identifier_code(parent_canonical_id: int) -> str:
    """Tryton 8.2's ``party.party`` has no parent field (no module installed here
    adds one), so the hierarchy is recorded as a ``party.identifier`` without a
    type whose code names the parent party: ``parent:HUB-<parent canonical id>``."""
    return f"{PARENT_IDENTIFIER_PREFIX}HUB-{parent_canonical_id}"


def address_values(customer: CustomerV1) -> dict[str, Any]:
    """``party.address`` values (street, postal code, city) from the canonical address."""
    if customer.address is None:
        return {}
    street = "\n".join(part for part in (customer.address.line1, customer.address.line2) if part)
    return {
        key: value
        for key, value in (
            ("street", street or None),
            ("postal_code", customer.address.postal_code),
            ("city", customer.address.city),
        )
        if value
    }


@dataclass(frozen=True)
class LinePrice:
    """Quantity, unit price and description to send for one canonical line."""

    quantity: Decimal
    unit_price: Decimal
    description: str
    exact: bool


def line_price(line: InvoiceLineV1, currency: str) -> LinePrice:
    """Split the line amount into quantity x unit price.

    ``unit_price = amount / quantity`` (major units) when that division is exact at
    Tryton's 4 price decimals, so Tryton's ``quantity * unit_price`` reproduces the
    amount to the cent. Otherwise (e.g. 10.00 for 3 units, or quantity 0) the line
    goes as quantity 1 at the full amount and the real quantity is kept in the
    description: the money must match, the quantity is information.
    """
    amount = to_major(line.amount, currency)
    quantity = line.quantity
    if quantity > 0 and _float_safe(quantity):
        try:
            unit_price = (amount / quantity).quantize(_PRICE_QUANTUM)
        except InvalidOperation:
            unit_price = None
        if unit_price is not None and unit_price * quantity == amount:
            return LinePrice(quantity, unit_price, line.description, exact=True)
    return LinePrice(
        Decimal(1),
        amount,
        f"{line.description} (quantity {quantity.normalize():f})",
        exact=False,
    )


def _float_safe(quantity: Decimal) -> bool:
    # Tryton stores line quantities as floats and multiplies Decimal(str(quantity)).
    return Decimal(str(float(quantity))) == quantity


def choose_tax(
    line: InvoiceLineV1,
    candidates: Sequence[tuple[int, Decimal]],
    *,
    label: str,
) -> int | None:
    """The ERP tax id whose rate reproduces the line's tax.

    ``candidates`` are the company's percentage taxes as ``(id, rate)`` with the
    rate as a fraction (Tryton's form: 0.10 for 10 %). No tax when ``tax_amount``
    is 0. A candidate fits when ``amount * rate`` is within one minor unit of
    ``tax_amount`` (billing systems round per line). Among fits, the one matching
    the line's declared ``tax_rate`` (percent) wins, then the closest. Raises
    MappingError naming the line when nothing fits.
    """
    if line.tax_amount == 0:
        return None
    fits: list[tuple[bool, Decimal, int]] = []
    for tax_id, rate in candidates:
        difference = abs(Decimal(line.amount) * Decimal(rate) - line.tax_amount)
        if difference <= 1:
            declared = line.tax_rate is not None and Decimal(rate) * 100 == line.tax_rate
            fits.append((not declared, difference, tax_id))
    if not fits:
        rates = ", ".join(f"{(Decimal(rate) * 100).normalize():f} %" for _, rate in candidates) or "none"
        raise MappingError(
            f"no ERP tax reproduces the tax of line {label!r}: tax {line.tax_amount} on amount "
            f"{line.amount} (minor units); ERP tax rates: {rates}"
        )
    return min(fits)[2]


def policy_tax(line: InvoiceLineV1, tax_id: int, rate: Decimal, *, code: str, label: str) -> int:
    """The ERP tax the posting policy named, if its ``rate`` (a fraction)
    reproduces billing's tax on the line within one minor unit; MappingError
    otherwise (the mapping points at the wrong tax, or billing used another rate)."""
    if abs(Decimal(line.amount) * Decimal(rate) - line.tax_amount) > 1:
        raise MappingError(
            f"ERP tax {code} ({(Decimal(rate) * 100).normalize():f} %) does not reproduce the tax of line "
            f"{label!r}: tax {line.tax_amount} on amount {line.amount} (minor units)"
        )
    return tax_id


def line_label(line: InvoiceLineV1, index: int) -> str:
    return line.source_line_id or f"#{index + 1} {line.description}"


def invoice_line_values(
    line: InvoiceLineV1,
    currency: str,
    *,
    company_id: int,
    currency_id: int,
    account_id: int,
    tax_id: int | None,
    analytic: tuple[int, int] | None = None,
    product: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Create values for one ``account.invoice.line``. The revenue account is passed
    in, because raw ``create`` runs no on_change. ``analytic`` is (root, account) of
    the line's cost center: one analytic entry for that root. ``product`` is
    (product, unit) of the catalog product the line bills: the line is booked
    against it (Tryton requires the unit with a product); without it the line is
    free text."""
    price = line_price(line, currency)
    values: dict[str, Any] = {
        "type": "line",
        "company": company_id,
        "currency": currency_id,
        "description": price.description,
        # Tryton's line quantity is a Float field; line_price checked it round-trips.
        "quantity": float(price.quantity),
        "unit_price": price.unit_price,
        "account": account_id,
        "taxes": [["add", [tax_id]]] if tax_id is not None else [],
    }
    if product is not None:
        values["product"], values["unit"] = product
    if analytic is not None:
        values["analytic_accounts"] = [["create", [{"root": analytic[0], "account": analytic[1]}]]]
    return values


def invoice_description(invoice: InvoiceV1) -> str:
    """The ERP invoice description: the billing number (or id) and its system."""
    return f"{invoice.source.system} invoice {invoice.number or invoice.source.external_id}"


def invoice_values(
    invoice: InvoiceV1,
    *,
    company_id: int,
    party_id: int,
    address_id: int,
    currency_id: int,
    receivable_account_id: int,
    journal_id: int,
    lines: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """Create values for a customer ``account.invoice``; ``reference`` carries the
    source id, which is how every later call finds the invoice again."""
    return {
        "type": "out",
        "company": company_id,
        "party": party_id,
        "invoice_address": address_id,
        "currency": currency_id,
        "account": receivable_account_id,
        "journal": journal_id,
        "invoice_date": invoice.issued_on,
        "reference": invoice.source.external_id,
        "description": invoice_description(invoice),
        "lines": [["create", [dict(line) for line in lines]]],
    }


def totals_match(total_amount: Decimal, invoice: InvoiceV1) -> bool:
    """Whether Tryton's ``total_amount`` equals the canonical total."""
    return Decimal(total_amount) == to_major(invoice.total, invoice.currency)


def external_document(record: Mapping[str, Any]) -> ExternalDocument:
    """An ``account.invoice`` read (id, number, state, party) -> ExternalDocument."""
    party = record.get("party")
    related = {"customer": str(party)} if party is not None else {}
    return ExternalDocument(
        external_id=str(record["id"]),
        number=record.get("number") or None,
        state=record.get("state"),
        related=related,
    )
