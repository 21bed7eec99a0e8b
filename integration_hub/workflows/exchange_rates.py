"""Exchange rates: a rate source (the ECB) → every ERP, once per currency × date.

An invoice in a currency its entity does not keep posts at the ERP's rate for the
invoice date (Tryton: the latest rate on or before it); without one the connector
refuses the post before creating anything (a finance ``MappingError``). This
workflow keeps the ERPs' rates:

* ``rates_load(on=…)`` reads the reference rates in force on a date from the rate
  source (``RateSource``; I/O before any transaction), stores them as
  ``ExchangeRate`` rows (once per source × publication day × currency), and plans one
  ``exchange_rate.load`` delivery per active ERP connection × wanted currency. The
  delivery's idempotency key is (action, ERP connection, rate row): one per currency ×
  date × ERP — Tryton keeps rates per database, shared by all its companies, so one
  load serves every company of that ERP.
* The ERP connector converts the published rate to its own reference currency and
  creates the rate unless it has one for that currency and date (kept, never
  overwritten: finance may have entered it).
* Triggers: a weekday beat row (``hub: exchange rates (weekdays)``, after the ECB's
  16:00 CET publication), ``POST /api/rates/load/``, the admin (*Exchange rates → Load
  reference rates*), ``manage.py`` via the demo. A finance exception "no … exchange
  rate" is then replayed.

Wanted currencies: the rate connection's ``currencies`` config, else every currency a
legal entity books or an invoice of the last 90 days uses. A wanted currency the
source does not publish (the ECB has no KWD) is reported, not planned.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import structlog
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from canonical.models import ExchangeRate, Invoice, LegalEntity
from canonical.services import xref_bind
from connectors.base import ExternalDocument, RateSink, RateSource, ReferenceRates
from connectors.errors import NeedsConfiguration
from connectors.models import Connection
from connectors.services import connection_for_role, connector_for
from integration_hub.runtime.dispatch import (
    DeliveryAction,
    Indicator,
    QueueClass,
    TraceSection,
    Workflow,
    register_workflow,
)
from integration_hub.runtime.models import BusinessTransaction, Delivery, ExceptionRecord
from integration_hub.runtime.services import delivery_plan

log = structlog.get_logger(__name__)

LOAD = "exchange_rate.load"
LOAD_PERMISSION = "canonical.load_exchangerate"  # the API and the admin page (finance, IT operations)
KIND = "exchange_rate"


class NoRatesPublished(LookupError):
    """The source had published nothing on or before the date."""


@dataclass(frozen=True)
class RatesLoad:
    source: str
    requested: dt.date
    published: dt.date
    stored: int
    planned: int
    currencies: tuple[str, ...] = ()
    unpublished: tuple[str, ...] = ()
    erps: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return {"source": self.source, "requested": self.requested, "published": self.published,
                "stored": self.stored, "planned": self.planned, "currencies": list(self.currencies),
                "unpublished": list(self.unpublished), "erps": list(self.erps)}


def rates_source(name: str = "") -> Connection:
    return connection_for_role(Connection.Role.RATES, name=name)


def rates_wanted(source: Connection, *, on: dt.date) -> list[str]:
    """The currencies to load (see the module docstring)."""
    configured = source.config.get("currencies")
    if configured:
        return sorted({str(code).upper() for code in configured})
    since = on - dt.timedelta(days=90)
    booked = set(LegalEntity.objects.values_list("currency", flat=True))
    invoiced = set(Invoice.objects.filter(issued_on__gte=since).values_list("currency", flat=True).distinct())
    return sorted(booked | invoiced)


def rates_load(*, on: dt.date | None = None, source: Connection | None = None) -> RatesLoad:
    """Store the rates in force on ``on`` (today) and plan their loads into every ERP.
    Raises NoRatesPublished, NeedsConfiguration (no rate source or no ERP), and the
    source's connector errors (``Retryable`` when it cannot answer now)."""
    on = on or timezone.localdate()
    source = source or rates_source()
    connector = connector_for(source)
    if not isinstance(connector, RateSource):
        raise NeedsConfiguration(f"connection {source.name} is not a rate source")
    published = connector.reference_rates(on)
    if published is None:
        raise NoRatesPublished(f"{source.name} had published no reference rates on or before {on}")
    erps = list(Connection.objects.filter(role=Connection.Role.ERP, is_active=True).order_by("name"))
    if not erps:
        raise NeedsConfiguration("no active ERP connection to load exchange rates into")
    wanted = rates_wanted(source, on=on)
    available = {**published.rates, published.base: 1}
    with transaction.atomic():
        txn, _ = BusinessTransaction.objects.get_or_create(
            subject=f"{source.name}:{KIND}:{published.date.isoformat()}", defaults={"kind": KIND})
        stored = 0
        rows = {}
        for code, rate in sorted(available.items()):
            row, created = ExchangeRate.objects.get_or_create(
                source=source.name, date=published.date, currency=code,
                defaults={"rate": rate, "base": published.base})
            rows[code] = row
            stored += created
        loads = Delivery.objects.filter(action=LOAD, object_type=KIND, object_id__in=[r.pk for r in rows.values()])
        before = loads.count()
        for erp in erps:
            for code in wanted:
                if code in rows:
                    delivery_plan(transaction_id=txn.pk, connection=erp, action=LOAD, object_type=KIND,
                                  object_id=rows[code].pk)
        planned = loads.count() - before
    result = RatesLoad(
        source=source.name, requested=on, published=published.date, stored=stored, planned=planned,
        currencies=tuple(code for code in wanted if code in rows),
        unpublished=tuple(code for code in wanted if code not in rows), erps=tuple(erp.name for erp in erps),
    )
    log.info("exchange_rates_load", **result.as_dict())
    return result


def rates_load_scheduled() -> list[RatesLoad]:
    """Beat: today's rates from every active rate source."""
    results = []
    for source in Connection.objects.filter(role=Connection.Role.RATES, is_active=True).order_by("name"):
        try:
            results.append(rates_load(source=source))
        except NoRatesPublished as exc:
            log.warning("exchange_rates_none", source=source.name, error=str(exc))
    return results


# ---------------------------------------------------------------- delivery


def reference_rates_of(row: ExchangeRate) -> ReferenceRates:
    """The whole publication ``row`` belongs to (the ERP converts against its own
    reference currency, which needs that currency's rate of the same day)."""
    day = ExchangeRate.objects.filter(source=row.source, date=row.date, base=row.base)
    return ReferenceRates(date=row.date, base=row.base,
                          rates={r.currency: r.rate for r in day if r.currency != row.base})


def _load_send(connector: RateSink, delivery: Delivery) -> ExternalDocument:
    row = ExchangeRate.objects.get(pk=delivery.object_id)
    return connector.load_exchange_rate(reference_rates_of(row), row.currency,
                                        idempotency_key=delivery.idempotency_key)


def _load_lookup(connector: RateSink, delivery: Delivery) -> ExternalDocument | None:
    row = ExchangeRate.objects.get(pk=delivery.object_id)
    return connector.find_exchange_rate(reference_rates_of(row), row.currency)


def _load_bind(delivery: Delivery, document: ExternalDocument) -> None:
    xref_bind(system=delivery.connection.name, object_type=KIND, canonical_id=delivery.object_id,
              external_id=document.external_id, number=document.number or "")


def _rate_rows(transaction_id, delivered) -> list[dict]:
    rows = ExchangeRate.objects.filter(pk__in=delivered.get(KIND, ()))
    subject = BusinessTransaction.objects.filter(pk=transaction_id).values_list("subject", flat=True).first()
    if subject and f":{KIND}:" in subject:
        name, _, day = subject.partition(f":{KIND}:")
        rows = ExchangeRate.objects.filter(Q(pk__in=delivered.get(KIND, ())) | Q(source=name, date=day))
    return [{"id": r.pk, "source": r.source, "date": r.date, "currency": r.currency, "base": r.base,
             "rate": str(r.rate)} for r in rows]


WORKFLOW = register_workflow(Workflow(
    name="exchange_rates",
    title="Exchange rates",
    pattern="scheduled pull (weekdays, after publication) → one load per currency × date × ERP",
    data_owner=ExceptionRecord.Team.FINANCE,
    queue=QueueClass.FINANCE,
    source_role=Connection.Role.RATES,
    target_roles=(Connection.Role.ERP,),
    subjects=(KIND,),
    actions=(DeliveryAction(name=LOAD, capability=RateSink, send=_load_send, bind=_load_bind,
                            lookup=_load_lookup),),
    trace=(TraceSection("exchange_rates", KIND, _rate_rows),),
    indicators=(
        Indicator("rates_awaiting", "Exchange rates awaiting the ERP", "runtime.Delivery",
                  {"action": LOAD, "status__in": "pending,held,in_flight"}, team=ExceptionRecord.Team.FINANCE,
                  help="published rates not loaded into an ERP yet"),
    ),
))
