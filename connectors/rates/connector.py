"""The ECB as the hub's exchange-rate source (role ``rates``).

Config, all optional: ``url`` (default the ECB's ``https://www.ecb.europa.eu/stats/eurofxref/``),
``currencies`` (the codes to load into the ERPs; default every currency the hub's
legal entities book or its invoices of the last 90 days use), ``timeout``.
No credentials: the files are public.
"""

from __future__ import annotations

import datetime as dt

from connectors.base import Connector
from connectors.rates.client import DEFAULT_URL, EcbClient
from connectors.rates.mapping import ReferenceRates
from connectors.registry import register

VENDOR = "ecb"


@register(VENDOR)
class EcbConnector(Connector):
    """RateSource: the euro reference rates in force on a date."""

    vendor = VENDOR
    url_fields = ("url",)

    def build_client(self) -> EcbClient:
        return EcbClient(self.config.get("url") or DEFAULT_URL, timeout=float(self.config.get("timeout", 20)),
                         transport=self.transport)

    def reference_rates(self, on: dt.date) -> ReferenceRates | None:
        """The last rates published on or before ``on``; None before the first one.
        Reads only (safe to repeat)."""
        return self.client.rates_on(on)
