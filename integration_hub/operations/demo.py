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
