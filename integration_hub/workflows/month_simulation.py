"""A simulated month of billing for a group expanding abroad, through the hub into the
ERP, then a three-way reconciliation billing ↔ hub ↔ ERP per legal entity × currency.

``month_plan`` builds the month's billing events with the Stripe sandbox (pure: a
seed gives the same month); ``month_run`` sends them, day by day, as signed webhooks
to the hub and lets the hub process them in-process (the same services the worker
runs); ``reconcile`` compares the three sides and stores a ``ReconciliationRun``.
The ERP is read back through its own JSON-RPC, independent of the connector.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Sum

from canonical.models import (
    CreditNote,
    Invoice,
    LegalEntity,
    Payment,
    PostingRule,
    Product,
    ReconciliationRun,
    Region,
    TaxMapping,
)
from canonical.money import to_major, to_minor
from canonical.policy_services import policy_version_approve, policy_version_draft
from canonical.services import xref_bind
from connectors.stripe.sandbox import StripeSandbox

# The catalog: billing product id -> (sku, name, product line).
CATALOG = {
    "prod_seats": ("SEAT", "Platform seat", "subscription"),
    "prod_services": ("SERVICES-DAY", "Onboarding day", "services"),
}


def catalog_bind(system: str = "stripe") -> None:
    """The month's products in the canonical catalog, bound to billing's product ids."""
    for external_id, (sku, name, line) in CATALOG.items():
        product, _ = Product.objects.update_or_create(sku=sku, defaults={"name": name, "product_line": line})
        xref_bind(system=system, object_type="product", canonical_id=product.pk, external_id=external_id)

# Customers: (name, country, state, currency, tax percent billing charges, tax ids, tax_exempt)
CUSTOMERS = (
    ("Ada Analytics Inc.", "US", "CA", "usd", Decimal("7.25"), (), "none"),
    ("Big Apple Media LLC", "US", "NY", "usd", Decimal("8.875"), (), "none"),
    ("Red Cross Relief", "US", "TX", "usd", None, (), "exempt"),
    ("Maple Robotics Ltd", "CA", "ON", "cad", None, (), "none"),
    ("Müller Maschinenbau GmbH", "DE", "", "eur", Decimal("19"), (("eu_vat", "DE811907980"),), "none"),
    ("Hans Schmidt", "DE", "", "eur", Decimal("19"), (), "none"),
    ("Dupont Conseil SA", "FR", "", "eur", None, (("eu_vat", "FR40303265045"),), "reverse"),
    ("Camille Martin", "FR", "", "eur", Decimal("20"), (), "none"),
    ("Thames Digital Ltd", "GB", "", "gbp", Decimal("20"), (), "none"),
    ("Alpen Pharma AG", "CH", "", "chf", None, (), "none"),
    # Index 10's invoice is voided (fate = index % 6): BHD takes it, so the CI month's
    # KWD invoice stays open, changes plan and shows its fils in the reconciliation.
    ("Gulf Pearl Holdings", "BH", "", "bhd", None, (), "none"),
    ("Al Noor Trading Co.", "KW", "", "kwd", None, (), "none"),
    ("Sakura Systems KK", "JP", "", "jpy", Decimal("10"), (), "none"),
    ("Hanbit Games Co.", "KR", "", "krw", None, (), "none"),
    ("Outback Cloud Pty", "AU", "", "aud", None, (), "none"),
)

# Plan prices per currency (minor units): a seat, and a services day. Billing rounds
# tax half-up per line, Tryton half-even: on an exact half-cent tie they differ by
# one minor unit and the hub refuses the post (see docs/posting-policies.md). The
# USD seat price (49.99) makes no tie at 7.25 % or 8.875 % below 200 seats.
PRICES = {
    "usd": (4999, 120000), "cad": (6500, 160000), "eur": (4500, 110000), "gbp": (3900, 95000),
    "chf": (4400, 105000), "kwd": (15250, 370000), "bhd": (18450, 452500), "jpy": (7400, 180000),
    "krw": (66000, 1600000), "aud": (7500, 180000),
}


def policy_for_the_month(*, user: Any, effective_from: dt.date):
    """An approved version for the month's group: US/USD books the Americas, EU/EUR
    (the German GmbH) Europe and the Gulf, JP/JPY Asia-Pacific; services lines on
    their own account and cost center; taxes by jurisdiction and rate."""
    entities = {entity.code: entity for entity in LegalEntity.objects.all()}
    region, _ = Region.objects.update_or_create(
        code="EU", defaults={"name": "European Union", "countries": ["AT", "BE", "DE", "ES", "FR", "IE", "IT", "NL"]})
    europe, _ = Region.objects.update_or_create(
        code="EUROPE-NON-EU", defaults={"name": "Europe outside the EU", "countries": ["CH", "GB", "NO"]})
    if not entities:
        raise LookupError("no legal entities: create them (US, EU, JP) first")
    catalog_bind()
    draft = policy_version_draft(note="Regional expansion: entities by region, services apart, tax by jurisdiction")
    rules = [
        ("Services in Europe", {"region": region, "product_line": "services"}, "EU", "4200", "CC-SERVICES"),
        ("EU customers", {"region": region}, "EU", "4100", "CC-EMEA"),
        ("Rest of Europe", {"region": europe}, "EU", "4100", "CC-EMEA"),
        ("Gulf", {"countries": ["KW", "BH", "AE"]}, "EU", "4100", "CC-GULF"),
        ("Services in the Americas", {"countries": ["US", "CA"], "product_line": "services"}, "US", "4200",
         "CC-SERVICES"),
        ("Americas", {"countries": ["US", "CA", "MX", "BR"]}, "US", "4100", "CC-AMER"),
        ("Asia-Pacific", {"countries": ["JP", "KR", "AU", "SG"]}, "JP", "4100", "CC-APAC"),
    ]
    for priority, (name, match, entity, account, center) in enumerate(rules, start=1):
        PostingRule.objects.create(version=draft, priority=priority * 10, name=name, legal_entity=entities[entity],
                                   revenue_account=account, cost_center=center, **match)
    taxes = [
        ("DE", "19", "", "DE-VAT-19"), ("DE", "7", "", "DE-VAT-7"), ("FR", "20", "", "FR-VAT-20"),
        ("GB", "20", "", "GB-VAT-20"), ("JP", "10", "", "JP-CT-10"), ("US-CA", "7.25", "", "US-CA-SALES"),
        ("US-NY", "8.875", "", "US-NY-SALES"), ("EU", "0", "b2b", "EU-RC-0"), ("*", "0", "exempt", "EXEMPT-0"),
        ("*", "0", "", ""),  # billing charged no tax (export, no nexus): post without tax
    ]
    for jurisdiction, rate, status, code in taxes:
        TaxMapping.objects.create(version=draft, jurisdiction=jurisdiction, rate=Decimal(rate), tax_status=status,
                                  tax_code=code)
    return policy_version_approve(draft, user=user, effective_from=effective_from)


@dataclass
class Month:
    """The month's events by day, and billing's final view of every document."""

    days: list[tuple[dt.date, list[dict[str, Any]]]]
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> latest invoice object
    credit_notes: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def month_plan(sandbox: StripeSandbox, *, start: dt.date, days: int = 30, subscriptions: int = 15,
               seed: int = 0) -> Month:
    """New subscriptions in the first week, a mid-month upgrade or downgrade for
    some, a services invoice for a few; payments on time, late and in parts; a
    credit note before payment; voids. Every currency's amounts are whole minor units."""
    rng = random.Random(seed)
    timeline: dict[int, list[tuple[str, Callable[[], dict[str, Any]]]]] = defaultdict(list)
    month = Month(days=[])
    clock = {"day": start}
    sandbox.clock = lambda: dt.datetime.combine(clock["day"], dt.time(12), dt.UTC).timestamp()
    customers = [
        sandbox.customer(name, f"billing@{name.split()[0].lower()}.example", country=country, state=state or None,
                         tax_ids=tax_ids, tax_exempt=exempt)
        for name, country, state, _, _, tax_ids, exempt in CUSTOMERS
    ]
    specs = [(customers[i % len(customers)], CUSTOMERS[i % len(CUSTOMERS)]) for i in range(subscriptions)]

    def issue(customer, spec, lines, subscription):
        invoice = sandbox.finalize(sandbox.invoice(customer, lines, currency=spec[3], tax_percent=spec[4],
                                                   subscription=subscription))
        month.invoices[invoice["id"]] = invoice
        return invoice

    for index, (customer, spec) in enumerate(specs):
        seat, day_rate = PRICES[spec[3]]
        sub = sandbox.new_id("sub")
        seats = rng.randint(2, 12)
        start_day = rng.randint(0, min(6, days - 1))
        later = rng.randint(start_day + 1, days - 1) if days > start_day + 1 else start_day
        fate = index % 6

        def first(customer=customer, spec=spec, seats=seats, seat=seat, sub=sub, fate=fate, later=later):
            invoice = issue(customer, spec, [("Seats", seats, seat, "prod_seats")], sub)
            month.counts["new subscriptions"] += 1
            events = [sandbox.event("invoice.finalized", invoice)]
            if fate == 0:
                paid = sandbox.pay(invoice)
                month.invoices[invoice["id"]] = paid
                events.append(sandbox.event("invoice.paid", paid))
                month.counts["paid on time"] += 1
            elif fate == 1:
                timeline[later].append(("late payment", lambda invoice=invoice: _pay_late(invoice)))
            elif fate == 2:
                payment, part = sandbox.pay_part(invoice, invoice["amount_due"] // 3)
                month.invoices[invoice["id"]] = part
                events.append(sandbox.event("invoice_payment.paid", payment))
                month.counts["partial payments"] += 1
            elif fate == 3:
                note = sandbox.credit_note(invoice, lines=[(0, 1)], reason="order_change")
                month.credit_notes[note["id"]] = note
                month.invoices[invoice["id"]] = sandbox.apply_credit(invoice, note)
                events.append(sandbox.event("credit_note.created", note))
                month.counts["credit notes"] += 1
            elif fate == 4:
                voided = sandbox.void(invoice)
                month.invoices[invoice["id"]] = voided
                events.append(sandbox.event("invoice.voided", voided))
                month.counts["voids"] += 1
            return events

        def _pay_late(invoice):
            paid = sandbox.pay(month.invoices[invoice["id"]])
            month.invoices[invoice["id"]] = paid
            month.counts["late payments"] += 1
            return [sandbox.event("invoice.paid", paid)]

        def change(customer=customer, spec=spec, seats=seats, seat=seat, sub=sub, index=index, day_rate=day_rate):
            new_seats = seats + 3 if index % 2 == 0 else max(1, seats - 1)
            month.counts["upgrades" if new_seats > seats else "downgrades"] += 1
            lines = [("Seats (changed plan)", new_seats, seat, "prod_seats")]
            if index % 4 == 0:
                lines.append(("Onboarding day", 1, day_rate, "prod_services"))
            return [sandbox.event("invoice.finalized", issue(customer, spec, lines, sub))]

        timeline[start_day].append(("new subscription", first))
        if fate != 4:
            timeline[min(days - 1, start_day + 14)].append(("plan change", change))

    for offset in range(days):
        day = start + dt.timedelta(days=offset)
        clock["day"] = day
        events: list[dict[str, Any]] = []
        for _, make in timeline.get(offset, ()):
            events.extend(make())
        month.days.append((day, events))
    return month


# ---------------------------------------------------------------- running it


@contextmanager
def in_process_tasks() -> Iterator[list[tuple[str, int, float | None]]]:
    """Run the hub's tasks in this process instead of sending them to a broker."""
    from integration_hub.celery import app

    sent: list[tuple[str, int, float | None]] = []
    original = app.send_task

    def record(name, args=None, countdown=None, **options):
        sent.append((name, args[0], countdown))

    app.send_task = record
    try:
        yield sent
    finally:
        app.send_task = original


def drain(sent: list[tuple[str, int, float | None]], *, budget: int = 10_000) -> int:
    from integration_hub.runtime import services

    runners = {services.PROCESS_TASK: services.inbound_process, services.DELIVER_TASK: services.delivery_attempt}
    ran = 0
    while sent and ran < budget:
        name, object_id, _countdown = sent.pop(0)
        runners[name](object_id)
        ran += 1
    return ran


def month_run(month: Month, *, send: Callable[[dict[str, Any]], int],
              progress: Callable[[str], None] = lambda _: None) -> None:
    """Send each day's events in order (``send`` posts one signed webhook and
    returns the HTTP status) and process them before the next day: the ERP numbers
    invoices in date order per company."""
    with in_process_tasks() as sent:
        for day, events in month.days:
            for event in events:
                status = send(event)
                if status != 200:
                    raise RuntimeError(f"the hub answered {status} to {event['type']} {event['id']}")
            drain(sent)
            if events:
                progress(f"{day}: {len(events)} events")


# ---------------------------------------------------------------- reconciliation

COLUMNS = ("documents", "total", "tax", "credited", "open")


def _billing_side(month: Month, entity_of: dict[str, str]) -> dict[tuple[str, str], dict[str, int]]:
    rows: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(COLUMNS, 0))
    for invoice_id, invoice in month.invoices.items():
        key = (entity_of.get(invoice_id, "?"), invoice["currency"].upper())
        row = rows[key]
        row["documents"] += 1
        if invoice["status"] == "void":
            continue
        tax = invoice["total"] - invoice.get("subtotal_excluding_tax", invoice["subtotal"])
        row["total"] += invoice["total"]
        row["tax"] += tax
        row["open"] += invoice.get("amount_remaining", 0) if invoice["status"] == "open" else 0
    for note in month.credit_notes.values():
        key = (entity_of.get(note["invoice"] if isinstance(note["invoice"], str) else note["invoice"]["id"], "?"),
               note["currency"].upper())
        rows[key]["credited"] += note["total"]
    return rows


def _hub_side() -> dict[tuple[str, str], dict[str, int]]:
    rows: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(COLUMNS, 0))
    for invoice in Invoice.objects.select_related("legal_entity"):
        row = rows[(invoice.legal_entity.code, invoice.currency)]
        row["documents"] += 1
        if invoice.status == Invoice.Status.VOID:
            continue
        paid = Payment.objects.filter(invoice=invoice).aggregate(s=Sum("amount"))["s"] or 0
        credited_before = CreditNote.objects.filter(invoice=invoice).exclude(status="void").aggregate(
            s=Sum("pre_payment_amount"))["s"] or 0
        row["total"] += invoice.total
        row["tax"] += invoice.tax
        row["open"] += max(invoice.total - paid - credited_before, 0) if invoice.status == Invoice.Status.OPEN else 0
    for note in CreditNote.objects.select_related("invoice__legal_entity").exclude(status="void"):
        rows[(note.invoice.legal_entity.code, note.currency)]["credited"] += note.total
    return rows


def _erp_side(reader: Any, month: Month, entity_of: dict[str, str]) -> dict[tuple[str, str], dict[str, int]]:
    """Read every document back from the ERP by its billing reference."""
    rows: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(COLUMNS, 0))
    fields = ["state", "total_amount", "tax_amount", "amount_to_pay", "currency.code", "type"]
    for invoice_id in month.invoices:
        records = reader.call("account.invoice", "search_read", [("reference", "=", invoice_id)], 0, None, None,
                              fields)
        for record in records:
            if Decimal(record["total_amount"]) < 0:
                continue  # the credit note a void made carries the invoice's reference too
            currency = record["currency."]["code"]
            row = rows[(entity_of.get(invoice_id, "?"), currency)]
            row["documents"] += 1
            if record["state"] == "cancelled":
                continue
            row["total"] += to_minor(Decimal(record["total_amount"]), currency)
            row["tax"] += to_minor(Decimal(record["tax_amount"]), currency)
            if record["state"] == "posted":
                row["open"] += to_minor(Decimal(record["amount_to_pay"]), currency)
    for note_id, note in month.credit_notes.items():
        invoice_id = note["invoice"] if isinstance(note["invoice"], str) else note["invoice"]["id"]
        for record in reader.call("account.invoice", "search_read", [("reference", "=", note_id)], 0, None, None,
                                  fields):
            currency = record["currency."]["code"]
            if record["state"] != "cancelled":
                rows[(entity_of.get(invoice_id, "?"), currency)]["credited"] += -to_minor(
                    Decimal(record["total_amount"]), currency)
    return rows


def reconcile(month: Month, reader: Any, *, label: str) -> ReconciliationRun:
    """Billing ↔ hub ↔ ERP per entity × currency: documents, totals, tax, credited
    and open amounts, in minor units. ``differences`` sums every absolute gap."""
    entity_of = dict(Invoice.objects.values_list("source_id", "legal_entity__code"))
    billing, hub, erp = _billing_side(month, entity_of), _hub_side(), _erp_side(reader, month, entity_of)
    rows, gaps = [], 0
    for key in sorted(set(billing) | set(hub) | set(erp)):
        row = {"entity": key[0], "currency": key[1]}
        for column in COLUMNS:
            values = (billing[key][column], hub[key][column], erp[key][column])
            row[column] = values
            gaps += abs(values[0] - values[1]) + abs(values[0] - values[2])
        row["difference"] = sum(abs(row[c][0] - row[c][1]) + abs(row[c][0] - row[c][2]) for c in COLUMNS)
        rows.append(row)
    table = render(rows)
    return ReconciliationRun.objects.create(label=label, rows=rows, differences=gaps, table=table)


def render(rows: Sequence[dict[str, Any]]) -> str:
    """The table as printed: billing / hub / ERP for each figure, major units."""
    header = f"{'entity':<6} {'ccy':<4} {'docs b/h/e':<11} {'total (billing = hub = ERP)':>30} {'tax':>16} " \
             f"{'credited':>14} {'open':>16} {'diff':>5}"
    lines = [header, "-" * len(header)]
    for row in rows:
        currency = row["currency"]

        def money(values, currency=currency):
            same = values[0] == values[1] == values[2]
            shown = f"{to_major(values[0], currency):,f}"
            return shown if same else "/".join(f"{to_major(v, currency):f}" for v in values)

        docs = "/".join(str(v) for v in row["documents"])
        lines.append(f"{row['entity']:<6} {currency:<4} {docs:<11} {money(row['total']):>30} {money(row['tax']):>16} "
                     f"{money(row['credited']):>14} {money(row['open']):>16} {row['difference']:>5}")
    return "\n".join(lines)
