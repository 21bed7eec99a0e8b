"""Pure mapping from Stripe objects to canonical contracts.

Both invoice shapes are read: the one before API version 2025-03-31 ("legacy":
``subscription``, line ``price``, line ``tax_amounts``/``amount_excluding_tax``)
and the 2025-03-31.basil one (``parent.subscription_details``, line
``pricing.price_details``, line ``taxes``, invoice ``total_taxes``). The shape is
detected from the fields present, never from an ``api_version`` string, because
the invoice object itself does not carry one.

Stripe sends every amount as an integer in the currency's smallest unit (JPY 500
is 500, KWD 1.234 is 1234), which is exactly the canonical representation, so
amounts are copied, never scaled.

Anything that cannot be mapped faithfully raises MappingError naming the field.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import ValidationError

from canonical.contracts import (
    INT64_MAX,
    INT64_MIN,
    Address,
    CustomerV1,
    InvoiceLineV1,
    InvoiceV1,
    PaymentV1,
    SourceRef,
    TaxId,
)
from canonical.money import UnknownCurrency, currency_normalize
from connectors.errors import MappingError
from connectors.payloads import epoch_datetime

SYSTEM = "stripe"

Shape = Literal["legacy", "basil"]

_MAPPABLE_STATUSES = {"open", "paid", "void", "uncollectible"}


# -- small readers: each names the full field path in its error -----------------


def _fail(path: str, problem: str) -> MappingError:
    return MappingError(f"stripe {path}: {problem}")


def _int(value: Any, path: str, *, required: bool = True) -> int | None:
    if value is None and not required:
        return None
    # bool is an int subclass and a float amount means a non-minor-unit value.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"expected an integer, got {value!r}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise _fail(path, f"{value} does not fit a 64-bit integer")
    return value


def _str(value: Any, path: str, *, required: bool = True) -> str | None:
    if value in (None, "") and not required:
        return None
    if not isinstance(value, str) or not value:
        raise _fail(path, f"expected a non-empty string, got {value!r}")
    return value


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, f"expected an object, got {value!r}")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(path, f"expected a list, got {value!r}")
    return value


def _id_of(value: Any, path: str) -> str | None:
    """An expandable field: an id string, an expanded object (its ``id``) or null."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return _str(value.get("id"), f"{path}.id")
    return _str(value, path)


def _timestamp(value: Any, path: str, *, required: bool = False) -> dt.datetime | None:
    seconds = _int(value, path, required=required)
    if seconds is None:
        return None
    return epoch_datetime(seconds, field=f"stripe {path}", error=MappingError)


def _date(value: Any, path: str, *, required: bool = False) -> dt.date | None:
    # Stripe timestamps are instants; the canonical dates are their UTC calendar day.
    moment = _timestamp(value, path, required=required)
    return None if moment is None else moment.date()


def _currency(value: Any, path: str) -> str:
    code = _str(value, path)
    try:
        return currency_normalize(code)
    except UnknownCurrency:
        raise _fail(path, f"unknown currency {code!r}") from None


def _build(model: type, path: str, **fields: Any) -> Any:
    """Construct a contract, turning pydantic's error into a MappingError with a path."""
    try:
        return model(**fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(object)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise _fail(path, f"does not fit {model.__name__}: {problems}") from None


# -- customer -----------------------------------------------------------------


def _address(value: Any, path: str) -> Address | None:
    if value is None:
        return None
    raw = _mapping(value, path)
    # Stripe returns "" for cleared address fields; canonical uses null.
    fields = {key: (raw.get(key) or None) for key in ("line1", "line2", "city", "postal_code", "state")}
    country = raw.get("country") or None
    if country is not None:
        country = _str(country, f"{path}.country").upper()
    if not any(fields.values()) and country is None:
        return None
    return _build(Address, path, country=country, **fields)


def _tax_ids(value: Any, path: str) -> tuple[TaxId, ...]:
    # A customer's ``tax_ids`` is a list object (when expanded); an invoice's
    # ``customer_tax_ids`` is a plain list.
    if isinstance(value, Mapping):
        if value.get("has_more"):
            raise _fail(f"{path}.has_more", "tax id list is truncated; fetching more is not supported yet")
        items, items_path = _list(value.get("data"), f"{path}.data"), f"{path}.data"
    else:
        items, items_path = _list(value, path), path
    result = []
    for index, item in enumerate(items):
        item_path = f"{items_path}[{index}]"
        item = _mapping(item, item_path)
        result.append(
            TaxId(
                type=_str(item.get("type"), f"{item_path}.type"),
                value=_str(item.get("value"), f"{item_path}.value"),
            )
        )
    return tuple(result)


def _display_name(name: Any, email: Any, customer_id: str) -> str:
    # Stripe allows customers without a name; the ERP party needs one.
    for candidate in (name, email):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return customer_id


def customer_from_stripe(customer: Mapping[str, Any], *, system: str = SYSTEM) -> CustomerV1:
    """Map a Stripe Customer object to CustomerV1.

    ``display_name`` is ``name``, else ``email``, else the customer id. ``tax_ids``
    is read when present (only when the request expanded it: a list object or a
    plain list). ``currency`` is the customer's default currency when Stripe has
    set one. A deleted customer (``deleted: true``) raises MappingError.
    """
    customer = _mapping(customer, "customer")
    if customer.get("object", "customer") != "customer":
        raise _fail("customer.object", f"expected 'customer', got {customer.get('object')!r}")
    customer_id = _str(customer.get("id"), "customer.id")
    if customer.get("deleted"):
        raise _fail("customer.deleted", f"customer {customer_id} is deleted; there is nothing to map")
    currency = customer.get("currency")
    # A customer the hub created carries the canonical id in metadata.hub_id.
    metadata = customer.get("metadata") if isinstance(customer.get("metadata"), Mapping) else {}
    hub_id = metadata.get("hub_id")
    return _build(
        CustomerV1,
        "customer",
        source=SourceRef(system=system, external_id=customer_id),
        canonical_id=int(hub_id) if isinstance(hub_id, str) and hub_id.isdigit() else None,
        display_name=_display_name(customer.get("name"), customer.get("email"), customer_id),
        email=_str(customer.get("email"), "customer.email", required=False),
        address=_address(customer.get("address"), "customer.address"),
        tax_ids=_tax_ids(customer.get("tax_ids"), "customer.tax_ids"),
        currency=_currency(currency, "customer.currency") if currency else None,
        tax_exempt=_tax_exempt(customer.get("tax_exempt"), "customer.tax_exempt"),
    )


def _tax_exempt(value: Any, path: str) -> str | None:
    # Stripe: "none", "exempt" or "reverse" (reverse charge applies).
    if value is None:
        return None
    if value not in ("none", "exempt", "reverse"):
        raise _fail(path, f"expected none, exempt or reverse, got {value!r}")
    return value


def _invoice_customer(invoice: Mapping[str, Any], system: str) -> CustomerV1:
    # The invoice carries a snapshot of the customer's details taken at
    # finalization; that snapshot, not the live customer, is what was invoiced.
    customer_id = _id_of(invoice.get("customer"), "invoice.customer")
    if customer_id is None:
        raise _fail("invoice.customer", "missing")
    email = _str(invoice.get("customer_email"), "invoice.customer_email", required=False)
    return _build(
        CustomerV1,
        "invoice.customer",
        source=SourceRef(system=system, external_id=customer_id),
        display_name=_display_name(invoice.get("customer_name"), email, customer_id),
        email=email,
        address=_address(invoice.get("customer_address"), "invoice.customer_address"),
        tax_ids=_tax_ids(invoice.get("customer_tax_ids"), "invoice.customer_tax_ids"),
        tax_exempt=_tax_exempt(invoice.get("customer_tax_exempt"), "invoice.customer_tax_exempt"),
    )


# -- invoice ------------------------------------------------------------------


def invoice_shape(invoice: Mapping[str, Any]) -> Shape:
    """ "basil" if any field introduced by 2025-03-31.basil is present, else "legacy"."""
    if any(key in invoice for key in ("parent", "total_taxes")):
        return "basil"
    lines = invoice.get("lines")
    data = lines.get("data") if isinstance(lines, Mapping) else None
    for line in data if isinstance(data, list) else ():
        if isinstance(line, Mapping) and ("pricing" in line or "taxes" in line):
            return "basil"
    return "legacy"


def _tax_entries(line: Mapping[str, Any], shape: Shape, path: str) -> list[tuple[int, bool, Any, str]]:
    """(amount, inclusive, tax rate id-or-object, entry path) for each tax on a line."""
    entries = []
    if shape == "basil":
        for index, tax in enumerate(_list(line.get("taxes"), f"{path}.taxes")):
            tax_path = f"{path}.taxes[{index}]"
            tax = _mapping(tax, tax_path)
            details = tax.get("tax_rate_details")
            rate = details.get("tax_rate") if isinstance(details, Mapping) else None
            entries.append(
                (
                    _int(tax.get("amount"), f"{tax_path}.amount"),
                    tax.get("tax_behavior") == "inclusive",
                    rate,
                    tax_path,
                )
            )
    else:
        for index, tax in enumerate(_list(line.get("tax_amounts"), f"{path}.tax_amounts")):
            tax_path = f"{path}.tax_amounts[{index}]"
            tax = _mapping(tax, tax_path)
            entries.append(
                (
                    _int(tax.get("amount"), f"{tax_path}.amount"),
                    tax.get("inclusive") is True,
                    tax.get("tax_rate"),
                    tax_path,
                )
            )
    return entries


def _tax_rate(entries: list[tuple[int, bool, Any, str]], line: Mapping[str, Any]) -> Decimal | None:
    """Combined percentage when every tax's rate is known, else None.

    A rate is known when the tax entry's rate was expanded into a TaxRate object,
    or (legacy shape) when its id is among the line's ``tax_rates`` objects.
    Stacked rates (e.g. state + county) apply to the same base, so they add up.
    """
    if not entries:
        return None
    known = {
        rate["id"]: rate
        for rate in line.get("tax_rates") or ()
        if isinstance(rate, Mapping) and isinstance(rate.get("id"), str)
    }
    total = Decimal(0)
    for _amount, _inclusive, rate, _path in entries:
        if isinstance(rate, str):
            rate = known.get(rate)
        percentage = rate.get("percentage") if isinstance(rate, Mapping) else None
        if isinstance(percentage, bool) or not isinstance(percentage, (int, float, str)):
            return None
        try:
            total += Decimal(str(percentage))
        except InvalidOperation:
            return None
    # JSON numbers arrive as floats (19.0); keep the plain decimal a person would write.
    return total.quantize(Decimal(1)) if total == total.to_integral_value() else total.normalize()


def _refs(line: Mapping[str, Any], shape: Shape, path: str) -> tuple[str | None, str | None, str | None]:
    """(product id, price id, product name if expanded) for a line."""
    if shape == "basil":
        pricing = line.get("pricing")
        if not isinstance(pricing, Mapping) or pricing.get("type") != "price_details":
            return None, None, None
        details = pricing.get("price_details")
        if details is None:
            # Stripe's schema lets price_details be null (a one-off invoice item
            # priced by amount): the line simply names no price.
            return None, None, None
        details = _mapping(details, f"{path}.pricing.price_details")
        product = details.get("product")
        return (
            _id_of(product, f"{path}.pricing.price_details.product"),
            _id_of(details.get("price"), f"{path}.pricing.price_details.price"),
            product.get("name") if isinstance(product, Mapping) else None,
        )
    price = line.get("price")
    if not isinstance(price, Mapping):
        return None, _id_of(price, f"{path}.price"), None
    product = price.get("product")
    return (
        _id_of(product, f"{path}.price.product"),
        _id_of(price.get("id"), f"{path}.price.id"),
        product.get("name") if isinstance(product, Mapping) else None,
    )


def _quantity(line: Mapping[str, Any], path: str) -> Decimal:
    # Newer versions add ``quantity_decimal`` (a string); older ones only ``quantity``.
    raw = line.get("quantity_decimal")
    field = "quantity_decimal"
    if raw is None:
        raw, field = line.get("quantity"), "quantity"
    if raw is None:
        # Stripe leaves quantity null on lines that are a bare amount; one unit of
        # that amount is the faithful reading.
        return Decimal(1)
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise _fail(f"{path}.{field}", f"expected a number, got {raw!r}")
    try:
        quantity = Decimal(str(raw))
    except InvalidOperation:
        raise _fail(f"{path}.{field}", f"not a number: {raw!r}") from None
    if not quantity.is_finite() or quantity < 0:
        raise _fail(f"{path}.{field}", f"not a non-negative number: {raw!r}")
    return quantity


def _has_discount(amounts: Any) -> bool:
    return any(isinstance(item, Mapping) and item.get("amount") for item in amounts or ())


def _line(line: Any, shape: Shape, path: str) -> InvoiceLineV1:
    line = _mapping(line, path)
    if _has_discount(line.get("discount_amounts")):
        raise _fail(f"{path}.discount_amounts", "discounted lines are not supported yet")
    amount = _int(line.get("amount"), f"{path}.amount")
    entries = _tax_entries(line, shape, path)
    tax_amount = sum(entry[0] for entry in entries)
    inclusive_tax = sum(entry[0] for entry in entries if entry[1])

    # ``amount`` includes tax only when the tax is inclusive. Legacy lines state
    # the net amount in ``amount_excluding_tax``; basil dropped that field, so the
    # net amount is ``amount`` minus the inclusive taxes.
    excluding = line.get("amount_excluding_tax") if shape == "legacy" else None
    if excluding is not None:
        net = _int(excluding, f"{path}.amount_excluding_tax")
        if net != amount - inclusive_tax:
            raise _fail(
                f"{path}.amount_excluding_tax",
                f"{net} disagrees with amount {amount} minus inclusive tax {inclusive_tax}",
            )
    else:
        net = amount - inclusive_tax

    product_ref, price_ref, product_name = _refs(line, shape, path)
    description = _str(line.get("description"), f"{path}.description", required=False)
    description = description or product_name or product_ref or price_ref
    if not description:
        raise _fail(f"{path}.description", "missing, and there is no price or product to name the line")
    period = line.get("period")
    period = _mapping(period, f"{path}.period") if period is not None else {}
    return _build(
        InvoiceLineV1,
        path,
        source_line_id=_str(line.get("id"), f"{path}.id", required=False),
        description=description,
        quantity=_quantity(line, path),
        amount=net,
        tax_amount=tax_amount,
        tax_rate=_tax_rate(entries, line),
        product_ref=product_ref,
        price_ref=price_ref,
        period_start=_date(period.get("start"), f"{path}.period.start"),
        period_end=_date(period.get("end"), f"{path}.period.end"),
    )


def _invoice_lines(invoice: Mapping[str, Any], shape: Shape) -> tuple[InvoiceLineV1, ...]:
    lines = _mapping(invoice.get("lines"), "invoice.lines")
    if lines.get("has_more"):
        raise _fail(
            "invoice.lines.has_more",
            "the embedded line list is truncated; fetching the remaining lines from the API "
            "is not implemented yet, and a truncated invoice must not be posted",
        )
    data = _list(lines.get("data"), "invoice.lines.data")
    if not data:
        raise _fail("invoice.lines.data", "the invoice has no lines")
    return tuple(_line(line, shape, f"invoice.lines.data[{index}]") for index, line in enumerate(data))


def _reported_taxes(invoice: Mapping[str, Any], shape: Shape) -> tuple[int | None, int, str]:
    """(total tax as Stripe reports it or None, inclusive part, field path)."""
    if shape == "basil":
        key, inclusive_flag = "total_taxes", ("tax_behavior", "inclusive")
    else:
        key, inclusive_flag = "total_tax_amounts", ("inclusive", True)
    items = invoice.get(key)
    if items is None:
        tax = _int(invoice.get("tax"), "invoice.tax", required=False)
        return tax, 0, "invoice.tax"
    total = inclusive = 0
    for index, item in enumerate(_list(items, f"invoice.{key}")):
        item = _mapping(item, f"invoice.{key}[{index}]")
        amount = _int(item.get("amount"), f"invoice.{key}[{index}].amount")
        total += amount
        if item.get(inclusive_flag[0]) == inclusive_flag[1]:
            inclusive += amount
    return total, inclusive, f"invoice.{key}"


def _totals(invoice: Mapping[str, Any], shape: Shape, lines: Iterable[InvoiceLineV1]) -> tuple[int, int, int]:
    """(subtotal excl. tax, tax, total), checked against the lines.

    Stripe's ``subtotal`` includes inclusive tax, so the net subtotal is
    ``subtotal_excluding_tax`` when given, else ``subtotal`` minus inclusive tax.
    Tax is ``total - subtotal``; when Stripe also reports the tax (``tax``,
    ``total_tax_amounts`` or ``total_taxes``) the two must agree.
    """
    lines = list(lines)
    if _has_discount(invoice.get("total_discount_amounts")):
        raise _fail("invoice.total_discount_amounts", "discounted invoices are not supported yet")
    total = _int(invoice.get("total"), "invoice.total")
    reported_tax, inclusive_tax, tax_path = _reported_taxes(invoice, shape)
    if invoice.get("subtotal_excluding_tax") is not None:
        subtotal = _int(invoice.get("subtotal_excluding_tax"), "invoice.subtotal_excluding_tax")
        subtotal_path = "invoice.subtotal_excluding_tax"
    else:
        subtotal = _int(invoice.get("subtotal"), "invoice.subtotal") - inclusive_tax
        subtotal_path = "invoice.subtotal"
    tax = total - subtotal
    if reported_tax is not None and reported_tax != tax:
        raise _fail(
            tax_path,
            f"tax {reported_tax} != total {total} - subtotal {subtotal} (discounts, credits "
            "or shipping are not supported yet)",
        )
    line_net = sum(line.amount for line in lines)
    if line_net != subtotal:
        raise _fail(subtotal_path, f"{subtotal} != sum of line amounts excluding tax {line_net}")
    line_tax = sum(line.tax_amount for line in lines)
    if line_tax != tax:
        raise _fail("invoice.lines.data", f"line taxes add up to {line_tax}, invoice tax is {tax}")
    return subtotal, tax, total


def _subscription_ref(invoice: Mapping[str, Any], shape: Shape) -> str | None:
    if shape == "basil":
        parent = invoice.get("parent")
        if not isinstance(parent, Mapping):
            return None
        details = parent.get("subscription_details")
        if not isinstance(details, Mapping):
            return None
        return _id_of(details.get("subscription"), "invoice.parent.subscription_details.subscription")
    return _id_of(invoice.get("subscription"), "invoice.subscription")


def invoice_from_stripe(invoice: Mapping[str, Any], *, system: str = SYSTEM) -> InvoiceV1:
    """Map a finalized Stripe Invoice (either API shape) to InvoiceV1.

    Contract:
    - ``status`` must be open, paid, void or uncollectible; a draft is refused (the
      hub only takes finalized invoices: a draft can still change).
    - ``issued_on`` is the UTC date of ``status_transitions.finalized_at``, else of
      ``created``; ``due_on`` of ``due_date``.
    - Line ``amount`` is net of tax (see ``_line``); ``tax_amount`` sums the line's
      tax entries; ``tax_rate`` is set only when every rate is known.
    - Totals must agree with the lines; discounts and truncated line lists
      (``lines.has_more``) are refused rather than posted wrong.
    - Amounts are Stripe's integers unchanged (already minor units).
    """
    invoice = _mapping(invoice, "invoice")
    if invoice.get("object", "invoice") != "invoice":
        raise _fail("invoice.object", f"expected 'invoice', got {invoice.get('object')!r}")
    invoice_id = _str(invoice.get("id"), "invoice.id")
    status = invoice.get("status")
    if status == "draft":
        raise _fail(
            "invoice.status", f"invoice {invoice_id} is a draft; the hub takes finalized invoices only"
        )
    if status not in _MAPPABLE_STATUSES:
        raise _fail("invoice.status", f"unsupported status {status!r}")

    currency = _currency(invoice.get("currency"), "invoice.currency")
    shape = invoice_shape(invoice)
    transitions = invoice.get("status_transitions")
    transitions = _mapping(transitions, "invoice.status_transitions") if transitions is not None else {}
    issued_on = _date(transitions.get("finalized_at"), "invoice.status_transitions.finalized_at")
    if issued_on is None:
        issued_on = _date(invoice.get("created"), "invoice.created", required=True)

    lines = _invoice_lines(invoice, shape)
    subtotal, tax, total = _totals(invoice, shape, lines)
    return _build(
        InvoiceV1,
        "invoice",
        source=SourceRef(system=system, external_id=invoice_id),
        number=_str(invoice.get("number"), "invoice.number", required=False),
        customer=_invoice_customer(invoice, system),
        currency=currency,
        status=status,
        issued_on=issued_on,
        due_on=_date(invoice.get("due_date"), "invoice.due_date"),
        subtotal=subtotal,
        tax=tax,
        total=total,
        amount_paid=_int(invoice.get("amount_paid", 0), "invoice.amount_paid"),
        paid_at=_timestamp(transitions.get("paid_at"), "invoice.status_transitions.paid_at"),
        voided_at=_timestamp(transitions.get("voided_at"), "invoice.status_transitions.voided_at"),
        subscription_ref=_subscription_ref(invoice, shape),
        lines=lines,
    )


# -- payment ------------------------------------------------------------------


def _payment_id(invoice: Mapping[str, Any]) -> str | None:
    # Legacy invoices name the PaymentIntent (or, for old charges, the Charge).
    for key in ("payment_intent", "charge"):
        found = _id_of(invoice.get(key), f"invoice.{key}")
        if found:
            return found
    # Basil moved them to the ``payments`` list (InvoicePayment objects), which is
    # only present when the request asked for it.
    payments = invoice.get("payments")
    data = payments.get("data") if isinstance(payments, Mapping) else None
    for index, item in enumerate(data if isinstance(data, list) else ()):
        if not isinstance(item, Mapping) or item.get("status") != "paid":
            continue
        payment = _mapping(item.get("payment"), f"invoice.payments.data[{index}].payment")
        for key in ("payment_intent", "charge"):
            found = _id_of(payment.get(key), f"invoice.payments.data[{index}].payment.{key}")
            if found:
                return found
    return None


def payments_from_stripe_invoice(invoice: Mapping[str, Any], *, system: str = SYSTEM) -> list[PaymentV1]:
    """Every payment a paid invoice names: one per paid entry of its ``payments``
    list when that list is present and holds more than one (an invoice paid in
    parts), else the one ``payment_from_stripe_invoice`` reads (or none)."""
    invoice = _mapping(invoice, "invoice")
    payments = invoice.get("payments")
    data = payments.get("data") if isinstance(payments, Mapping) else None
    paid = [item for item in data if isinstance(item, Mapping) and item.get("status") == "paid"] \
        if isinstance(data, list) else []
    if invoice.get("status") != "paid" or len(paid) < 2:
        single = payment_from_stripe_invoice(invoice, system=system)
        return [single] if single is not None else []
    if isinstance(payments, Mapping) and payments.get("has_more"):
        raise _fail("invoice.payments.has_more", "the embedded payment list is truncated")
    result = []
    for index, item in enumerate(data):
        if isinstance(item, Mapping) and item.get("status") == "paid":
            result.append(invoice_payment_from_stripe(item, system=system, path=f"invoice.payments.data[{index}]"))
    return result


def invoice_payment_from_stripe(
    item: Mapping[str, Any], *, system: str = SYSTEM, path: str = "invoice_payment"
) -> PaymentV1:
    """One InvoicePayment (a payment towards an invoice, possibly one of several).

    The payment's source id is the PaymentIntent, else the Charge, else the
    payment record, else the InvoicePayment's own id: the same id an ``invoice.paid``
    snapshot names for it, so the two events mean one payment. Refused unless
    ``status`` is paid (an open or canceled attempt moved no money)."""
    item = _mapping(item, path)
    status = item.get("status")
    item_id = _str(item.get("id"), f"{path}.id")
    if status != "paid":
        raise _fail(f"{path}.status", f"invoice payment {item_id} is {status!r}, not paid; nothing to post")
    payment = item.get("payment")
    payment = _mapping(payment, f"{path}.payment") if payment is not None else {}
    source_id = None
    for key in ("payment_intent", "charge", "payment_record"):
        source_id = source_id or _id_of(payment.get(key), f"{path}.payment.{key}")
    amount = _int(item.get("amount_paid"), f"{path}.amount_paid")
    if amount <= 0:
        raise _fail(f"{path}.amount_paid", f"a paid invoice payment of {amount}")
    transitions = item.get("status_transitions")
    transitions = _mapping(transitions, f"{path}.status_transitions") if transitions is not None else {}
    paid_at = _timestamp(transitions.get("paid_at"), f"{path}.status_transitions.paid_at") \
        or _timestamp(item.get("created"), f"{path}.created", required=True)
    invoice_id = _id_of(item.get("invoice"), f"{path}.invoice")
    if invoice_id is None:
        raise _fail(f"{path}.invoice", "missing")
    return _build(
        PaymentV1, path,
        source=SourceRef(system=system, external_id=source_id or item_id),
        invoice=SourceRef(system=system, external_id=invoice_id),
        currency=_currency(item.get("currency"), f"{path}.currency"),
        amount=amount,
        paid_at=paid_at,
    )


def payment_from_stripe_invoice(invoice: Mapping[str, Any], *, system: str = SYSTEM) -> PaymentV1 | None:
    """The payment that settled a paid invoice, or None.

    None when the invoice is not ``paid``, or when ``amount_paid`` is 0 (a zero
    total or one covered by the customer's credit balance: no money moved). The
    payment's source id is the PaymentIntent or Charge id when the invoice names
    one, else ``"{invoice id}:paid"`` (stable, so a redelivered event maps to the
    same payment). ``paid_at`` is ``status_transitions.paid_at`` and is required.
    """
    invoice = _mapping(invoice, "invoice")
    if invoice.get("status") != "paid":
        return None
    invoice_id = _str(invoice.get("id"), "invoice.id")
    amount = _int(invoice.get("amount_paid"), "invoice.amount_paid")
    if amount == 0:
        return None
    if amount < 0:
        raise _fail("invoice.amount_paid", f"negative amount {amount}")
    transitions = _mapping(invoice.get("status_transitions"), "invoice.status_transitions")
    paid_at = _timestamp(transitions.get("paid_at"), "invoice.status_transitions.paid_at", required=True)
    return _build(
        PaymentV1,
        "invoice",
        source=SourceRef(system=system, external_id=_payment_id(invoice) or f"{invoice_id}:paid"),
        invoice=SourceRef(system=system, external_id=invoice_id),
        currency=_currency(invoice.get("currency"), "invoice.currency"),
        amount=amount,
        paid_at=paid_at,
    )
