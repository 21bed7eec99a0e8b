"""Tryton's side of exchange rates: ``currency.currency.rate`` rows.

Mixed into ``TrytonConnector``. Tryton keeps one rate per currency and date for the
whole database (every company shares it, unique on ``(date, currency)``), relative
to one reference currency whose rate is 1 — the convention of Tryton's own ECB cron
(``currency.cron``), which writes the reference currency's 1 beside the others.
The reference is the connection's ``rate_reference`` config, or else the one
currency whose rates are all 1 in the ERP.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from connectors.base import ExternalDocument, ReferenceRates
from connectors.errors import MappingError, NeedsConfiguration

RATE = "currency.currency.rate"
RATE_PLACES = 6  # currency.currency.rate.rate is Numeric(digits=(11, 6)) by default


class TrytonRates:
    config: dict[str, Any]
    client: Any

    def rate_reference(self) -> str:
        """The ERP's reference currency (rate 1)."""
        if self.config.get("rate_reference"):
            return str(self.config["rate_reference"]).upper()

        def load() -> str:
            ones = self.client.call(RATE, "search_read", [("rate", "=", Decimal(1))], 0, None, None,
                                    ["currency.code"], context={})
            codes = {row["currency."]["code"] for row in ones if row.get("currency.")}
            if len(codes) != 1:
                raise NeedsConfiguration(
                    f"cannot tell the ERP's reference currency (currencies at rate 1: {sorted(codes) or 'none'}); "
                    "set rate_reference in the Tryton connection's config")
            return codes.pop()

        return self._cached(0, "rate-reference", load)

    def _rate_document(self, code: str, row: dict[str, Any], *, state: str) -> ExternalDocument:
        return ExternalDocument(external_id=str(row["id"]), number=f"{code} {row['date']}", state=state,
                                related={"rate": str(row["rate"])})

    def find_exchange_rate(self, rates: ReferenceRates, currency: str) -> ExternalDocument | None:
        currency_id = self._currency_id(currency)
        found = self.client.call(RATE, "search_read", [("currency", "=", currency_id), ("date", "=", rates.date)],
                                 0, 1, None, ["id", "date", "rate"], context={})
        return self._rate_document(currency, found[0], state="found") if found else None

    def load_exchange_rate(self, rates: ReferenceRates, currency: str, *, idempotency_key: str) -> ExternalDocument:
        """Found by (currency, date) first: a rate already there (loaded before, or
        entered by finance) is kept as is. Otherwise the published rate converted to
        the reference currency, to Tryton's six decimals."""
        reference = self.rate_reference()
        try:
            value = rates.against(reference, currency, places=RATE_PLACES)
        except KeyError as exc:
            raise MappingError(f"the rate source published no {exc.args[0]} rate on {rates.date}, so "
                               f"{currency} per {reference} cannot be computed") from None
        found = self.find_exchange_rate(rates, currency)
        if found is not None:
            return found
        currency_id = self._currency_id(currency)
        created, = self.client.call(RATE, "create", [{"currency": currency_id, "date": rates.date, "rate": value}],
                                    context={})
        return ExternalDocument(external_id=str(created), number=f"{currency} {rates.date}", state="loaded",
                                related={"rate": str(value)})
