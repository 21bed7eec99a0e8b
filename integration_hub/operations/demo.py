"""The demo scenario: what a billing system sends in a normal afternoon.

Pure data building on the Stripe sandbox; the ``hub_demo`` command sends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connectors.stripe.sandbox import StripeSandbox


@dataclass
class Delivery:
    label: str
    event: dict[str, Any]


@dataclass
class Scenario:
    deliveries: list[Delivery]
    invoices: dict[str, str]  # Stripe invoice id -> what it shows


def scenario_build(sandbox: StripeSandbox) -> Scenario:
    northwind = sandbox.customer("Northwind Traders", "ap@northwind.example", country="US")
    mueller = sandbox.customer("Müller Maschinenbau GmbH", "rechnung@mueller.example", country="DE")
    sakura = sandbox.customer("Sakura Robotics KK", "keiri@sakura.example", country="JP")
    globex = sandbox.customer("Globex Corporation", "billing@globex.example", country="US")

    usd = sandbox.finalize(sandbox.invoice(northwind, [("Team plan seats", 5, 4900), ("Onboarding", 1, 25000)]))
    eur = sandbox.finalize(sandbox.invoice(mueller, [("Maschinen-Monitoring", 12, 3000)], currency="eur"))
    jpy = sandbox.finalize(sandbox.invoice(sakura, [("Robot fleet licence", 3, 12000)], currency="jpy"))
    eur_void = sandbox.finalize(sandbox.invoice(mueller, [("Fehlbuchung", 1, 9900)], currency="eur"))
    usd_late = sandbox.finalize(sandbox.invoice(globex, [("Usage overage", 1, 1999)], tax_percent=None))

    usd_finalized = sandbox.event("invoice.finalized", usd)
    deliveries = [
        Delivery("customer.created Northwind", sandbox.event("customer.created", northwind)),
        Delivery("invoice.finalized USD", usd_finalized),
        Delivery("invoice.finalized USD (Stripe retried: same event id)", usd_finalized),
        Delivery("invoice.finalized EUR", sandbox.event("invoice.finalized", eur)),
        Delivery("invoice.finalized JPY (zero-decimal)", sandbox.event("invoice.finalized", jpy)),
        Delivery("invoice.paid JPY", sandbox.event("invoice.paid", sandbox.pay(jpy))),
        Delivery("invoice.finalized EUR, to be voided", sandbox.event("invoice.finalized", eur_void)),
        Delivery("invoice.voided EUR", sandbox.event("invoice.voided", sandbox.void(eur_void))),
        Delivery("invoice.paid USD before its finalized (out of order)", sandbox.event("invoice.paid", sandbox.pay(usd_late))),
        Delivery("invoice.finalized USD, arriving late", sandbox.event("invoice.finalized", usd_late)),
        Delivery("invoice.sent (not handled: recorded as ignored)", sandbox.event("invoice.sent", usd)),
    ]
    invoices = {
        usd["id"]: "USD, 2 lines, 10 % tax",
        eur["id"]: "EUR, 10 % tax",
        jpy["id"]: "JPY (0 decimals), paid",
        eur_void["id"]: "EUR, voided → credited",
        usd_late["id"]: "USD, paid-before-finalized",
    }
    return Scenario(deliveries, invoices)


@dataclass
class CrmScenario:
    events: list[tuple[str, dict[str, Any]]]  # (label, change event envelope)
    accounts: dict[str, str]  # Salesforce account id -> what it shows


def crm_scenario_build(org: Any) -> CrmScenario:
    """Sales creates accounts in Salesforce: a plain one, a likely duplicate of it,
    and a parent/child pair whose child's change event arrives first."""
    vandelay = org.account_create("Vandelay Industries GmbH", BillingCountry="DE", BillingCity="Hamburg",
                                  CurrencyIsoCode="EUR", Website="https://vandelay.example")
    duplicate = org.account_create("Vandelay Industries", BillingCountry="DE", Website="www.vandelay.example")
    parent = org.account_create("Initech Holding Inc.", BillingCountry="US", BillingCity="Austin")
    child = org.account_create("Initech Services LLC", BillingCountry="US", ParentId=parent["Id"])
    events = [
        ("Account CREATE Vandelay", org.last_event(vandelay["Id"])),
        ("Account CREATE Vandelay (relay retried: same change)", org.last_event(vandelay["Id"])),
        ("Account CREATE Initech Services (child, before its parent)", org.last_event(child["Id"])),
        ("Account CREATE Initech Holding (parent)", org.last_event(parent["Id"])),
        ("Account CREATE Vandelay Industries (likely duplicate)", org.last_event(duplicate["Id"])),
    ]
    accounts = {
        vandelay["Id"]: "new account",
        duplicate["Id"]: "same domain as Vandelay",
        parent["Id"]: "parent",
        child["Id"]: "child, arrived first",
    }
    return CrmScenario(events, accounts)


@dataclass
class AdjustmentScenario:
    deliveries: list[Delivery]
    invoices: dict[str, str]  # Stripe invoice id -> what it shows
    credit_notes: dict[str, str]  # Stripe credit note id -> what it shows
    refunds: dict[str, str]  # Stripe refund id -> what it shows
    billing_remaining: dict[str, int]  # Stripe invoice id -> amount_remaining (minor units) in billing


def adjustments_scenario_build(sandbox: StripeSandbox) -> AdjustmentScenario:
    """Billing adjusts invoices: a partial credit note before payment, then the rest
    paid in two parts; a paid invoice partly refunded with a credit note."""
    initech = sandbox.customer("Initech LLC", "ap@initech.example", country="US")
    hooli = sandbox.customer("Hooli Inc.", "billing@hooli.example", country="US")

    credited = sandbox.finalize(sandbox.invoice(initech, [("Seats", 10, 3000), ("Training", 1, 20000)]))
    note = sandbox.credit_note(credited, lines=[(0, 2)], reason="order_change")  # two seats back: 66.00
    after_credit = sandbox.apply_credit(credited, note)
    first, part_paid = sandbox.pay_part(after_credit, 30000)
    second, paid_off = sandbox.pay_part(part_paid, part_paid["amount_remaining"])

    refunded = sandbox.finalize(sandbox.invoice(hooli, [("Annual plan", 1, 120000)]))
    refunded_paid = sandbox.pay(refunded)
    refund = sandbox.refund(sandbox.payment_of(refunded_paid), 22000)
    refund_note = sandbox.credit_note(refunded_paid, amount=20000, refund=refund, reason="product_unsatisfactory")
    deliveries = [
        Delivery("invoice.finalized USD, to be credited", sandbox.event("invoice.finalized", credited)),
        Delivery("credit_note.created: 2 seats credited before payment", sandbox.event("credit_note.created", note)),
        Delivery("invoice_payment.paid: first part", sandbox.event("invoice_payment.paid", first)),
        Delivery("invoice_payment.paid: the rest", sandbox.event("invoice_payment.paid", second)),
        Delivery("refund.created (before its credit note)", sandbox.event("refund.created", refund)),
        Delivery("invoice.finalized USD, to be refunded", sandbox.event("invoice.finalized", refunded)),
        Delivery("invoice.paid USD", sandbox.event("invoice.paid", refunded_paid)),
        Delivery("credit_note.created: 200.00 + tax, refunded", sandbox.event("credit_note.created", refund_note)),
    ]
    return AdjustmentScenario(
        deliveries,
        invoices={credited["id"]: "credited, then paid in 2 parts", refunded["id"]: "paid, then refunded"},
        credit_notes={note["id"]: "partial by line, pre-payment", refund_note["id"]: "by amount, refunded"},
        refunds={refund["id"]: "pays the credit note out"},
        billing_remaining={credited["id"]: paid_off["amount_remaining"], refunded["id"]: 0},
    )
