"""The ECB rate source: the eurofxref parser on the ECB's own file shape, the client
choosing daily / 90-day / full history against the sandbox over HTTP, and Tryton's
own ECB client (``trytond.modules.currency.ecb``, the vendor-side reader) reading the
sandbox exactly as it reads the ECB."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from connectors.base import ReferenceRates
from connectors.errors import Permanent, Retryable
from connectors.rates import mapping
from connectors.rates.client import EcbClient
from connectors.rates.sandbox import EcbSandbox, published_rates
from connectors.sandbox_server import Fault

# The head of an eurofxref-daily.xml as the ECB serves it (tabs, single quotes).
ECB_DAILY = b"""<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
\t<gesmes:subject>Reference rates</gesmes:subject>
\t<gesmes:Sender>
\t\t<gesmes:name>European Central Bank</gesmes:name>
\t</gesmes:Sender>
\t<Cube>
\t\t<Cube time='2024-05-17'>
\t\t\t<Cube currency='USD' rate='1.0867'/>
\t\t\t<Cube currency='JPY' rate='169.21'/>
\t\t\t<Cube currency='NOK' rate='11.6320'/>
\t\t</Cube>
\t</Cube>
</gesmes:Envelope>"""

FRIDAY = dt.date(2026, 11, 27)


@pytest.fixture
def ecb():
    sandbox = EcbSandbox(today=dt.date(2026, 12, 1), days=400)
    sandbox.serve()
    yield sandbox
    sandbox.stop()


def test_the_ecb_daily_file_parses_to_rates_per_euro():
    days = mapping.days_parse(ECB_DAILY)
    assert days == {dt.date(2024, 5, 17): {"USD": Decimal("1.0867"), "JPY": Decimal("169.21"),
                                           "NOK": Decimal("11.6320")}}


def test_the_sandbox_writes_the_ecb_envelope_byte_for_byte_in_shape():
    day = dt.date(2024, 5, 17)
    written = mapping.envelope({day: mapping.days_parse(ECB_DAILY)[day]})
    assert written.replace(b"\n", b"").replace(b"\t", b"") == ECB_DAILY.replace(b"\n", b"").replace(b"\t", b"")


def test_a_document_that_is_not_eurofxref_is_permanent():
    with pytest.raises(Permanent, match="not XML"):
        mapping.days_parse(b"<html><body>maintenance")
    with pytest.raises(Permanent, match="malformed Cube"):
        mapping.days_parse(ECB_DAILY.replace(b"rate='1.0867'", b"rate='n/a'"))


def test_rates_against_another_reference_currency():
    rates = ReferenceRates(date=FRIDAY, rates={"USD": Decimal("1.0850"), "NOK": Decimal("11.7000")})
    assert rates.against("USD", "NOK") == Decimal("10.783410")
    assert rates.against("USD", "EUR") == Decimal("0.921659")
    assert rates.against("EUR", "NOK") == Decimal("11.700000")
    with pytest.raises(KeyError, match="KWD"):
        rates.against("USD", "KWD")


def test_the_client_reads_the_day_or_the_last_publication_before_it(ecb):
    client = EcbClient(ecb.url)
    assert client.rates_on(dt.date(2026, 12, 1)).date == dt.date(2026, 12, 1)  # the daily file
    saturday = client.rates_on(dt.date(2026, 11, 28))
    assert (saturday.date, saturday.rates) == (FRIDAY, published_rates(FRIDAY))  # the 90-day file
    old = dt.date(2026, 3, 2)
    assert client.rates_on(old).date == old  # beyond 90 days: the full history
    assert client.rates_on(dt.date(2020, 1, 1)) is None
    assert ecb.requests[-2:] == ["/eurofxref-daily.xml", "/eurofxref-hist.xml"]  # 90 days would not cover it
    client.close()


def test_a_source_that_cannot_answer_now_is_retryable_and_garbage_is_permanent(ecb):
    client = EcbClient(ecb.url)
    ecb.faults.add(Fault(503))
    with pytest.raises(Retryable):
        client.rates_on(dt.date(2026, 12, 1))
    ecb.faults.add(Fault(200, body={"not": "xml"}))
    with pytest.raises(Permanent):
        client.rates_on(dt.date(2026, 12, 1))
    client.close()


def test_trytons_own_ecb_client_reads_the_sandbox(ecb, monkeypatch):
    from trytond.modules.currency import ecb as ecb_module  # installed with the hub's [erp] extra

    base = ecb.url + "/"
    monkeypatch.setattr(ecb_module, "_URL_TODAY", base + "eurofxref-daily.xml")
    monkeypatch.setattr(ecb_module, "_URL_90", base + "eurofxref-hist-90d.xml")
    monkeypatch.setattr(ecb_module, "_URL_HIST", base + "eurofxref-hist.xml")
    today = ecb_module.get_rates("EUR", dt.date(2026, 12, 1))
    assert today == published_rates(dt.date(2026, 12, 1))
    assert ecb_module.get_rates("EUR", dt.date(2026, 11, 28)) == published_rates(FRIDAY)  # latest before
    old = ecb_module.get_rates("EUR", dt.date(2026, 3, 2))
    assert old == published_rates(dt.date(2026, 3, 2))
    # Tryton's cron base (here USD): the same division the hub's loader does, to 4 places.
    in_usd = ecb_module.get_rates("USD", FRIDAY)
    published = ReferenceRates(date=FRIDAY, rates=published_rates(FRIDAY))
    assert in_usd["NOK"] == published.against("USD", "NOK", places=4)
    with pytest.raises(ecb_module.RatesNotAvailableError):
        ecb_module.get_rates("EUR", dt.date(2026, 12, 2))  # not published yet
