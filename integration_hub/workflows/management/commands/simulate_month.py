"""``manage.py simulate_month``: a month of multi-entity, multi-currency billing
through the Stripe sandbox and the hub into a real Tryton, then the three-way
reconciliation table (billing ↔ hub ↔ ERP per entity × currency)."""

from __future__ import annotations

import datetime as dt
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.test import Client

from canonical.models import LegalEntity
from connectors.services import connection_upsert
from connectors.stripe.sandbox import StripeSandbox
from connectors.tryton.client import TrytonClient
from connectors.tryton.server import DEFAULT_CACHE_DIR, TrytonServer
from integration_hub.runtime.models import ExceptionRecord
from integration_hub.workflows import month_simulation as sim

ENTITIES = (("US", "Acme US Inc.", "USD", "US"), ("EU", "Acme Europe GmbH", "EUR", "DE"),
            ("JP", "Acme Japan KK", "JPY", "JP"))


class Command(BaseCommand):
    help = "Simulate a month of billing into a real Tryton and reconcile billing, hub and ERP to the minor unit."

    def add_arguments(self, parser):
        parser.add_argument("--subscriptions", type=int, default=45, help="customers' subscriptions (CI: 15)")
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--seed", type=int, default=13)

    def handle(self, *args, subscriptions: int, days: int, seed: int, **options):
        server = TrytonServer.from_cache(DEFAULT_CACHE_DIR, progress=lambda m: self.stderr.write(m)).start()
        try:
            run = simulate(server, subscriptions=subscriptions, days=days, seed=seed, say=self.stdout.write)
        finally:
            server.stop()
        if run.differences:
            raise CommandError(f"reconciliation is {run.differences} minor units off")


def simulate(server: TrytonServer, *, subscriptions: int, days: int, seed: int, say=print):
    """Configure the hub for the month (entities, connections, policy), run it and
    reconcile. Returns the stored ReconciliationRun."""
    start = dt.date.today() - dt.timedelta(days=days - 1)
    for code, name, currency, country in ENTITIES:
        LegalEntity.objects.update_or_create(code=code, defaults={"name": name, "currency": currency,
                                                                  "country": country, "erp_connection": "tryton"})
    secret = "whsec_" + secrets.token_hex(16)
    connection_upsert(name="stripe", vendor="stripe", role="billing", config={},
                      credentials={"webhook_secrets": [secret]})
    connection_upsert(name="tryton", vendor="tryton", role="erp", config=server.connection_config(),
                      credentials=server.credentials())
    finance, _ = get_user_model().objects.get_or_create(username="finance-sim", defaults={"is_superuser": True,
                                                                                            "is_staff": True})
    version = sim.policy_for_the_month(user=finance, effective_from=start - dt.timedelta(days=1))
    say(f"posting policy v{version.number}: {version.rules.count()} rules, {version.tax_mappings.count()} tax "
        "mappings")

    sandbox = StripeSandbox(secret, seed=seed)
    month = sim.month_plan(sandbox, start=start, days=days, subscriptions=subscriptions, seed=seed)
    client = Client()

    def send(event):
        body, headers = sandbox.webhook_request(event)
        return client.post("/api/webhooks/stripe/", data=body, content_type="application/json",
                           headers={k: v for k, v in headers.items() if k != "Content-Type"}).status_code

    sim.month_run(month, send=send)
    currencies = sorted({invoice["currency"].upper() for invoice in month.invoices.values()})
    countries = sorted({c[1] for c in sim.CUSTOMERS[:subscriptions]})
    say(f"{start} .. {start + dt.timedelta(days=days - 1)}: {len(month.invoices)} invoices in "
        f"{len(currencies)} currencies ({', '.join(currencies)}), customers in {len(countries)} countries; "
        + ", ".join(f"{n} {what}" for what, n in sorted(month.counts.items())))
    creds = server.credentials()
    reader = TrytonClient(server.url, server.database, creds["login"], creds["password"])
    try:
        run = sim.reconcile(month, reader, label=f"simulated month from {start} (seed {seed})")
    finally:
        reader.close()
    say(run.table)
    open_exceptions = ExceptionRecord.objects.filter(status=ExceptionRecord.Status.OPEN)
    for record in open_exceptions:
        say(f"open exception: {record.summary}")
    say(f"difference: {run.differences} minor units over {len(run.rows)} entity × currency rows")
    return run
