"""Configure a freshly activated Tryton database for the hub: three companies that
can book and post customer invoices in any of the hub's demo currencies, with the
taxes, revenue accounts and cost centers (analytic accounts) the demo posting
policies name, and take payments.

Runs in-process through proteus' trytond backend, no server needed, with the same
config file the server will use::

    TRYTOND_CONFIG=/path/trytond.conf python -m connectors.tryton.setup_db DBNAME

Prints one JSON object (companies, taxes, accounts, payment methods by currency
code; the integration user) on stdout; ``server.build_template`` stores it next
to the template. The fiscal year covers today - 6 months .. today + 5 months, so a
template built from this script is only valid for a limited time (see server.py).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from decimal import Decimal

HUB_LOGIN = "hub"
HUB_PASSWORD = "hub-secret-pw"  # trytond requires >= 8 characters

# (company name, currency code); the first one is created through the company
# wizard, which is what attaches it to the admin user.
COMPANIES = (
    ("Acme US Inc.", "USD"),
    ("Acme Europe GmbH", "EUR"),
    ("Acme Japan KK", "JPY"),
)

# name, symbol, digits, rounding, rate against the reference currency (USD = 1):
# units of the currency per US dollar, from the first day on. The test helper
# get_currency() gives every currency 0.01 rounding, which is wrong for JPY, KRW
# (no minor unit) and KWD, BHD (three decimals). NOK has no rate at all: the
# "no exchange rate for the date" case.
CURRENCIES = {
    "USD": ("U.S. Dollar", "$", 2, Decimal("0.01"), Decimal("1.0")),
    "EUR": ("Euro", "€", 2, Decimal("0.01"), Decimal("0.9")),
    "JPY": ("Japanese Yen", "¥", 0, Decimal("1"), Decimal("150.0")),
    "GBP": ("Pound Sterling", "£", 2, Decimal("0.01"), Decimal("0.79")),
    "CHF": ("Swiss Franc", "CHF", 2, Decimal("0.01"), Decimal("0.88")),
    "CAD": ("Canadian Dollar", "CA$", 2, Decimal("0.01"), Decimal("1.36")),
    "AUD": ("Australian Dollar", "A$", 2, Decimal("0.01"), Decimal("1.52")),
    "KRW": ("Won", "₩", 0, Decimal("1"), Decimal("1350")),
    "KWD": ("Kuwaiti Dinar", "KD", 3, Decimal("0.001"), Decimal("0.307")),
    "BHD": ("Bahraini Dinar", "BD", 3, Decimal("0.001"), Decimal("0.376")),
    "NOK": ("Norwegian Krone", "kr", 2, Decimal("0.01"), None),
}

# ERP taxes every company keeps, by the code (tax name) posting policies name:
# (code, rate as a fraction, legal notice printed on the invoice).
TAXES = (
    ("DE-VAT-19", Decimal("0.19"), ""),
    ("DE-VAT-7", Decimal("0.07"), ""),
    ("FR-VAT-20", Decimal("0.20"), ""),
    ("GB-VAT-20", Decimal("0.20"), ""),
    ("JP-CT-10", Decimal("0.10"), ""),
    ("US-CA-SALES", Decimal("0.0725"), ""),
    ("US-NY-SALES", Decimal("0.08875"), ""),
    ("EU-RC-0", Decimal("0"), "Reverse charge, Art. 196 Directive 2006/112/EC"),
    ("EXEMPT-0", Decimal("0"), "Exempt from tax"),
)

# Revenue accounts (code, name) under the chart's revenue account, and cost
# centers (code, name) under one analytic root "CC" per company.
REVENUE_ACCOUNTS = (
    ("4100", "Subscription revenue"),
    ("4200", "Professional services revenue"),
    ("4300", "Usage revenue"),
)
COST_CENTERS = (
    ("CC-AMER", "Americas sales"),
    ("CC-EMEA", "EMEA sales"),
    ("CC-APAC", "APAC sales"),
    ("CC-GULF", "Gulf sales"),
    ("CC-SERVICES", "Professional services"),
)

TAX_RATE = Decimal("0.10")


def ensure_currency(code):
    """Return the currency ``code``, created with its real digits and a rate."""
    from proteus import Model

    Currency = Model.get("currency.currency")
    Rate = Model.get("currency.currency.rate")
    name, symbol, digits, rounding, rate = CURRENCIES[code]
    found = Currency.find([("code", "=", code)])
    if found:
        currency = found[0]
    else:
        currency = Currency(name=name, symbol=symbol, code=code)
    currency.digits = digits
    currency.rounding = rounding
    currency.save()
    if rate is not None and not Rate.find([("currency", "=", currency.id)]):
        Rate(date=dt.date.min, rate=rate, currency=currency).save()
    return currency


def switch_company(cfg, company):
    """Make ``company`` the current company of the connected (admin) user."""
    from proteus import Model

    User = Model.get("res.user")
    user = User(cfg.user)
    if company not in user.companies:
        user.companies.append(company)
    user.company = company
    user.save()
    cfg._context = User.get_preferences(True, {})


def setup_ledger(company, accounts):
    """The demo taxes, revenue accounts and cost centers of ``company`` (see TAXES,
    REVENUE_ACCOUNTS, COST_CENTERS); returns their ids by code."""
    from proteus import Model

    Tax = Model.get("account.tax")
    Account = Model.get("account.account")
    Analytic = Model.get("analytic_account.account")
    taxes = {}
    for code, rate, notice in TAXES:
        tax = Tax(name=code, description=code, type="percentage", rate=rate, company=company,
                  invoice_account=accounts["tax"], credit_note_account=accounts["tax"])
        if notice:
            tax.legal_notice = notice
        tax.save()
        taxes[code] = tax.id
    revenue = accounts["revenue"]
    revenue_accounts = {}
    for code, name in REVENUE_ACCOUNTS:
        account = Account(name=name, code=code, type=revenue.type, parent=revenue.parent, company=company)
        account.save()
        revenue_accounts[code] = account.id
    root = Analytic(name="Cost centers", code="CC", type="root", company=company)
    root.save()
    cost_centers = {}
    for code, name in COST_CENTERS:
        center = Analytic(name=name, code=code, type="normal", root=root, parent=root, company=company)
        center.save()
        cost_centers[code] = center.id
    return {"taxes": taxes, "revenue_accounts": revenue_accounts, "cost_centers": cost_centers,
            "analytic_root": root.id}


def setup_company(cfg, company, today):
    """Chart, fiscal year with periods and invoice sequences, 10 % tax, the demo
    ledger (setup_ledger), payment method, default revenue account, exchange
    accounts and per-line tax rounding for ``company``."""
    from proteus import Model
    from trytond.modules.account.tests.tools import (
        create_chart,
        create_fiscalyear,
        create_tax,
        get_accounts,
    )
    from trytond.modules.account_invoice.tests.tools import set_fiscalyear_invoice_sequences

    code = company.currency.code
    switch_company(cfg, company)
    create_chart(company)
    fiscalyear = set_fiscalyear_invoice_sequences(create_fiscalyear(company, today=today))
    fiscalyear.click("create_period")
    accounts = get_accounts(company)

    tax = create_tax(TAX_RATE, company=company)
    tax.name = tax.description = "VAT-10"  # the code a posting policy names
    tax.save()
    ledger = setup_ledger(company, accounts)

    Journal = Model.get("account.journal")
    PaymentMethod = Model.get("account.invoice.payment.method")
    journal_cash, = Journal.find([("type", "=", "cash")], limit=1)
    payment_method = PaymentMethod(
        name=f"Bank transfer ({code})",
        company=company,
        journal=journal_cash,
        credit_account=accounts["cash"],
        debit_account=accounts["cash"],
    )
    payment_method.save()

    # Uncollectible invoices are written off to an expense account through a
    # reconciliation write-off method (the hub names the account; finance owns it).
    journal_write_off = (Journal.find([("type", "=", "write-off")], limit=1) or [None])[0]
    if journal_write_off is None:
        journal_write_off = Journal(name="Write-Off", code="WO", type="write-off")
        journal_write_off.save()
    WriteOff = Model.get("account.move.reconcile.write_off")
    write_off = WriteOff(name=f"Bad debts ({code})", company=company, journal=journal_write_off,
                         credit_account=accounts["expense"], debit_account=accounts["expense"])
    write_off.save()

    # Invoice lines sent by the hub carry no product, so the revenue account comes
    # from this company-dependent default (account_product). Billing systems round
    # tax per line, so Tryton must too or totals drift by a minor unit.
    Configuration = Model.get("account.configuration")
    configuration = Configuration(1)
    configuration.default_category_account_revenue = accounts["revenue"]
    configuration.default_category_account_expense = accounts["expense"]
    configuration.tax_rounding = "line"
    # An invoice in a currency other than the company's: each move line is
    # converted and rounded on its own, the remainder goes to these accounts.
    configuration.currency_exchange_credit_account = accounts["revenue"]
    configuration.currency_exchange_debit_account = accounts["expense"]
    configuration.save()

    return {
        "company": company.id,
        "currency": company.currency.id,
        "tax": tax.id,
        "ledger": ledger,
        "payment_method": payment_method.id,
        "fiscalyear": {
            "id": fiscalyear.id,
            "start_date": fiscalyear.start_date.isoformat(),
            "end_date": fiscalyear.end_date.isoformat(),
        },
        "accounts": {name: account.id for name, account in accounts.items()},
        "write_off_account": accounts["expense"].code,
    }


def main(dbname: str) -> dict:
    from proteus import Model
    from proteus import config as pconfig
    from trytond.modules.company.tests.tools import create_company

    started = time.monotonic()
    cfg = pconfig.set_trytond(dbname)
    today = dt.date.today()

    Party = Model.get("party.party")
    Company = Model.get("company.company")
    currencies = {code: ensure_currency(code) for code in CURRENCIES}

    companies = {}
    for index, (name, code) in enumerate(COMPANIES):
        party = Party(name=name)
        party.save()
        if index == 0:
            create_company(party, currencies[code])
            company, = Company.find([("party.name", "=", name)])
        else:
            company = Company(party=party, currency=currencies[code])
            company.save()
        companies[code] = company

    per_company = {code: setup_company(cfg, company, today) for code, company in companies.items()}
    switch_company(cfg, companies["USD"])

    User = Model.get("res.user")
    Group = Model.get("res.group")
    hub = User(name="Integration Hub", login=HUB_LOGIN, password=HUB_PASSWORD)
    hub.groups.extend(Group.find([]))
    hub.companies.extend([Company(company.id) for company in companies.values()])
    hub.company = Company(companies["USD"].id)
    # Record rules then cover every company; the hub picks one per call via context.
    hub.company_filter = "all"
    hub.save()

    return {
        "database": dbname,
        "today": today.isoformat(),
        "companies": {code: company.id for code, company in companies.items()},
        "currencies": {code: currency.id for code, currency in currencies.items()},
        "taxes": {code: data["tax"] for code, data in per_company.items()},
        "ledgers": {code: data["ledger"] for code, data in per_company.items()},
        "payment_methods": {code: data["payment_method"] for code, data in per_company.items()},
        "fiscalyears": {code: data["fiscalyear"] for code, data in per_company.items()},
        "accounts": {code: data["accounts"] for code, data in per_company.items()},
        "write_off_accounts": {code: data["write_off_account"] for code, data in per_company.items()},
        "hub_user": hub.id,
        "hub_login": HUB_LOGIN,
        "setup_seconds": round(time.monotonic() - started, 2),
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: TRYTOND_CONFIG=... python -m connectors.tryton.setup_db DBNAME")
    print(json.dumps(main(sys.argv[1]), indent=1))
