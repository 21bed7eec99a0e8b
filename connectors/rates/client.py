"""HTTP to the ECB's eurofxref files (``mapping.py`` describes them), through
``connectors.http``. The file is chosen as Tryton's own ECB client
(``trytond.modules.currency.ecb.get_rates``) chooses it: the daily file when it
covers the date, else the 90-day history, else the full history."""

from __future__ import annotations

import datetime as dt

import httpx

from connectors import http
from connectors.rates import mapping

VENDOR = "ECB"
DEFAULT_URL = "https://www.ecb.europa.eu/stats/eurofxref/"
DAILY, DAYS_90, HISTORY = "eurofxref-daily.xml", "eurofxref-hist-90d.xml", "eurofxref-hist.xml"


class EcbClient:
    def __init__(self, base_url: str = DEFAULT_URL, *, timeout: float = 20.0,
                 transport: httpx.BaseTransport | None = None):
        self._http = http.client(base_url=base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def days(self, name: str) -> dict[dt.date, dict]:
        response = http.request(self._http, "GET", f"/{name}", vendor=VENDOR, what=name)
        return mapping.days_parse(response.content)

    def rates_on(self, on: dt.date) -> mapping.ReferenceRates | None:
        """The reference rates in force on ``on`` (the last publication on or before
        it), or None when nothing was published by then."""
        on = max(on, mapping.FIRST_DAY)
        daily = self.days(DAILY)
        latest = max(daily) if daily else None
        if latest is not None and latest <= on:
            return mapping.rates_on(daily, on)
        if latest is None or latest - on < dt.timedelta(days=90):
            found = mapping.rates_on(self.days(DAYS_90), on)
            if found is not None:
                return found
        return mapping.rates_on(self.days(HISTORY), on)
