"""A stand-in for the ECB's eurofxref files: the reference rates it publishes, per
day, served as ``eurofxref-daily.xml`` (the latest day), ``eurofxref-hist-90d.xml``
and ``eurofxref-hist.xml`` in the ECB's exact envelope (``mapping.envelope``), so
Tryton's own ECB client reads it too.

Publication follows the ECB's calendar in the simple form: a rate set per weekday
(none on Saturdays and Sundays); ``publish(day, rates)`` replaces a day's set,
``withdraw(day)`` removes it (a TARGET holiday). ``today`` is the last day published
so far (later days are not yet published). Faults: ``faults`` (``connectors.sandbox_server``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal

from connectors.rates import mapping
from connectors.sandbox_server import FaultQueue, Request, Response, Served

# Reference rates (units per euro) in the range the ECB published in late 2026 — a
# deterministic base the sandbox moves a little from day to day. No KWD or BHD: the
# ECB does not publish them.
BASE_RATES = {
    "USD": Decimal("1.0850"), "JPY": Decimal("162.45"), "GBP": Decimal("0.85310"), "CHF": Decimal("0.9412"),
    "NOK": Decimal("11.7000"), "SEK": Decimal("11.2450"), "DKK": Decimal("7.4590"), "CAD": Decimal("1.4780"),
    "AUD": Decimal("1.6520"), "KRW": Decimal("1468.50"), "PLN": Decimal("4.2710"), "INR": Decimal("91.275"),
}


def published_rates(day: dt.date) -> dict[str, Decimal]:
    """The sandbox's deterministic rates for a weekday: the base moved by a few
    basis points that depend on the date."""
    step = Decimal(day.toordinal() % 7 - 3) / Decimal(10000)
    return {code: (rate * (1 + step)).quantize(rate) for code, rate in BASE_RATES.items()}


class EcbSandbox(Served):
    def __init__(self, *, today: dt.date | None = None, days: int = 120):
        self.today = today or dt.date.today()
        self.faults = FaultQueue()
        self.requests: list[str] = []
        self.days: dict[dt.date, dict[str, Decimal]] = {}
        for offset in range(days):
            day = self.today - dt.timedelta(days=offset)
            if day.weekday() < 5:
                self.days[day] = published_rates(day)

    def publish(self, day: dt.date, rates: Mapping[str, Decimal]) -> None:
        self.days[day] = dict(rates)

    def withdraw(self, day: dt.date) -> None:
        self.days.pop(day, None)

    def _published(self) -> dict[dt.date, dict[str, Decimal]]:
        return {day: rates for day, rates in self.days.items() if day <= self.today}

    def document(self, name: str) -> bytes | None:
        published = self._published()
        if name == "eurofxref-daily.xml":
            return mapping.envelope({max(published): published[max(published)]} if published else {})
        if name == "eurofxref-hist-90d.xml":
            return mapping.envelope({d: r for d, r in published.items() if self.today - d < dt.timedelta(days=90)})
        if name == "eurofxref-hist.xml":
            return mapping.envelope(published)
        return None

    def handle(self, request: Request) -> Response:
        self.requests.append(request.path)
        fault = self.faults.take(request)
        if fault is not None:
            return fault
        name = request.path.rstrip("/").rsplit("/", 1)[-1]
        body = self.document(name) if request.method == "GET" else None
        if body is None:
            return Response(404, raw=b"<html><body>Not Found</body></html>", headers={"Content-Type": "text/html"})
        return Response(200, raw=body, headers={"Content-Type": "text/xml"})
