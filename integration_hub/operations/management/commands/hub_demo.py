"""``make demo``: the whole hub on this machine, on the embedded defaults.

Starts a real Tryton ERP, the web app, a Celery worker and beat; the Stripe sandbox
sends signed webhooks; the command follows the deliveries and prints where each
invoice ended up in the ERP. Then CRM onboarding, the catalog sync, a regional
posting policy with an exchange rate loaded from the ECB sandbox, quote to cash, and
usage: a batch loaded, aggregated, pushed to billing as meter events and reconciled.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from rest_framework.authtoken.models import Token

from canonical.models import CrossReference, Customer, Invoice, LegalEntity
from canonical.money import to_major
from canonical.policy_services import policy_bootstrap
from connectors.salesforce.sandbox import SalesforceSandbox
from connectors.services import connection_upsert
from connectors.stripe.api_sandbox import StripeApiSandbox
from connectors.stripe.sandbox import StripeSandbox
from connectors.tryton.client import TrytonClient
from connectors.tryton.server import TrytonServer, TrytonServerError
from integration_hub.operations.demo import adjustments_scenario_build, crm_scenario_build, scenario_build
from integration_hub.operations.demo_quote_to_cash import quote_to_cash_demo
from integration_hub.operations.demo_usage import usage_demo
from integration_hub.runtime.models import Delivery, ExceptionRecord, InboundEvent

LEGAL_ENTITIES = [("US", "Acme US Inc.", "USD", "US"), ("EU", "Acme Europe GmbH", "EUR", "DE"),
                  ("JP", "Acme Japan KK", "JPY", "JP")]


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Command(BaseCommand):
    help = "Run a demo of the whole hub: Tryton ERP, web, worker, beat and signed Stripe events."

    def add_arguments(self, parser):
        parser.add_argument("--keep-running", action="store_true",
                            help="leave everything running afterwards (Ctrl-C stops it) to explore the admin")
        parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for all deliveries")

    def handle(self, *args, keep_running: bool, timeout: float, **options):
        self.started = time.monotonic()
        self.processes: list[subprocess.Popen] = []
        self.log_dir = Path(settings.VAR_DIR) / "demo-logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        tryton = None
        try:
            self.step("Starting the Tryton ERP (the first run builds its database: about 1–2 minutes)")
            try:
                tryton = TrytonServer.from_cache(
                    Path(settings.BASE_DIR) / "var" / "tryton", progress=lambda line: self.say(f"  {line}")
                ).start()
            except TrytonServerError as exc:
                raise CommandError(str(exc)) from exc
            self.say(f"  Tryton is serving {tryton.url} (log: {tryton.log_path})")

            secret = "whsec_demo_" + secrets.token_hex(16)
            # The CRM and Stripe's API run in this process as real HTTP servers;
            # the worker calls them like the real vendors.
            self.salesforce = SalesforceSandbox(seed=int(time.time()))
            self.salesforce.serve()
            self.stripe_api = StripeApiSandbox()
            self.stripe_api.serve()
            self.configure(tryton, secret)
            web_url = self.start_processes()
            self.send_events(web_url, secret)
            self.send_adjustment_events(web_url)
            self.send_crm_events(web_url)
            self.follow(timeout)
            self.report(tryton)
            self.report_adjustments(tryton)
            self.report_crm(tryton)
            self.catalog_scenario(tryton, timeout)
            self.policy_scenario(tryton, web_url, timeout)
            quote_to_cash_demo(self, tryton, web_url, timeout)
            usage_demo(self, web_url, timeout)
            self.report_console(web_url)
            self.step("Done")
            if keep_running:
                self.explore(web_url)
        finally:
            self.stop_processes()
            for sandbox in (getattr(self, "salesforce", None), getattr(self, "stripe_api", None),
                            getattr(self, "platform", None), getattr(self, "ecb", None)):
                if sandbox is not None:
                    sandbox.stop()
            if tryton is not None:
                tryton.stop()

    # ------------------------------------------------------------ output

    def say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def step(self, text: str) -> None:
        self.say(self.style.MIGRATE_HEADING(f"[{time.monotonic() - self.started:6.1f}s] {text}"))

    # ------------------------------------------------------------ steps

    def configure(self, tryton: TrytonServer, secret: str) -> None:
        self.step("Configuring connections and legal entities (stored in the hub's database)")
        for code, name, currency, country in LEGAL_ENTITIES:
            LegalEntity.objects.update_or_create(code=code, defaults={"name": name, "currency": currency,
                                                                      "country": country})
        # A first approved posting policy (each entity books its functional currency;
        # billed 10 % tax → the ERP's VAT-10): real ones are drafted, dry-run and
        # approved in the admin.
        policy = policy_bootstrap(taxes={"10": "VAT-10", "0": ""})
        connection_upsert(name="stripe", vendor="stripe", role="billing", config=self.stripe_api.connection_config(),
                          credentials={"webhook_secrets": [secret], "api_key": self.stripe_api.api_key})
        connection_upsert(name="salesforce", vendor="salesforce", role="crm",
                          config=self.salesforce.connection_config(), credentials=self.salesforce.credentials())
        connection_upsert(name="tryton", vendor="tryton", role="erp", config=tryton.connection_config(),
                          credentials=tryton.credentials())
        self.say("  stripe (billing, webhook secret stored encrypted), tryton (ERP: companies "
                 f"{tryton.connection_config()['companies']}), posting policy v{policy.number} approved")

    def start_processes(self) -> str:
        self.step("Starting the web app (gunicorn), a Celery worker, the usage worker and beat")
        port = _free_port()
        python = sys.executable
        # Prometheus scrapes /metrics with this bearer token (the web process inherits it).
        os.environ.setdefault("HUB_METRICS_TOKEN", secrets.token_hex(16))
        self.spawn("web", [python, "-m", "gunicorn", "integration_hub.wsgi", "--bind", f"127.0.0.1:{port}",
                           "--workers", "2", "--access-logfile", "-"])
        # One worker for every queue but the bulk usage one, which has its own (`make usage-worker`).
        self.spawn("worker", [python, "-m", "celery", "-A", "integration_hub", "worker", "-c", "2",
                              "-X", settings.HUB_USAGE_QUEUE, "--without-gossip", "--without-mingle", "-l", "INFO"])
        self.spawn("usage-worker", [python, "-m", "celery", "-A", "integration_hub", "worker", "-c", "1", "-Q",
                                    settings.HUB_USAGE_QUEUE, "-n", "usage@%h", "--without-gossip",
                                    "--without-mingle", "-l", "INFO"])
        self.spawn("beat", [python, "-m", "celery", "-A", "integration_hub", "beat", "-l", "INFO",
                            "--schedule", str(self.log_dir / "beat-schedule")])
        web_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{web_url}/admin/login/", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise CommandError(f"the web app did not start; see {self.log_dir / 'web.log'}")
            time.sleep(0.3)
        self.say(f"  web {web_url}, logs in {self.log_dir}")
        return web_url

    def spawn(self, name: str, command: list[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "w")
        self.processes.append(subprocess.Popen(
            command, cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT,
            # The demo prints its own story; its processes log in full to their files.
            env={**os.environ, "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO"}, start_new_session=True,
        ))

    def send_events(self, web_url: str, secret: str) -> None:
        self.step("The Stripe sandbox sends signed webhooks")
        self.sandbox = StripeSandbox(secret, seed=int(time.time()))
        self.scenario = scenario_build(self.sandbox)
        with httpx.Client(timeout=10) as client:
            for delivery in self.scenario.deliveries:
                response = self.sandbox.deliver(delivery.event, f"{web_url}/api/webhooks/stripe/", client=client)
                status = response.json().get("status", response.json().get("error"))
                self.say(f"  {response.status_code} {status:<9} {delivery.label}")
                if response.status_code != 200:
                    raise CommandError(f"the hub refused a demo event: {response.text}")

    def send_adjustment_events(self, web_url: str) -> None:
        self.step("The Stripe sandbox adjusts invoices: a credit note, partial payments, a refund")
        self.adjustments = adjustments_scenario_build(self.sandbox)
        with httpx.Client(timeout=10) as client:
            for delivery in self.adjustments.deliveries:
                response = self.sandbox.deliver(delivery.event, f"{web_url}/api/webhooks/stripe/", client=client)
                self.say(f"  {response.status_code} {response.json().get('status', '?'):<9} {delivery.label}")

    def report_adjustments(self, tryton: TrytonServer) -> None:
        self.step("Adjusted invoices in the ERP: what billing says is owed, what Tryton says")
        client = TrytonClient(tryton.url, tryton.database, **tryton.credentials())
        try:
            for reference, label in self.adjustments.invoices.items():
                [row] = client.call("account.invoice", "search_read", [("reference", "=", reference)], 0, None,
                                    None, ["number", "state", "total_amount", "amount_to_pay"]) or [None]
                billing = to_major(self.adjustments.billing_remaining[reference], "USD")
                self.say(f"  {reference:<32} {label:<32} billing owes {billing:>7}   ERP {row['number']:<4} "
                         f"{row['state']:<7} total {row['total_amount']:>8} to pay {row['amount_to_pay']:>7}")
            for reference, label in self.adjustments.credit_notes.items():
                found = client.call("account.invoice", "search_read", [("reference", "=", reference)], 0, None,
                                    None, ["number", "state", "total_amount"])
                text = (f"ERP credit note {found[0]['number']:<4} {found[0]['state']:<7} total "
                        f"{found[0]['total_amount']:>8}") if found else "NOT IN THE ERP"
                self.say(f"  {reference:<32} {label:<32} {text}")
            for reference, label in self.adjustments.refunds.items():
                moves = client.call("account.move", "search_read", [("description", "=", f"stripe refund {reference}")],
                                    0, None, None, ["number", "state"])
                text = f"ERP move {moves[0]['number']} {moves[0]['state']}" if moves else "NOT IN THE ERP"
                self.say(f"  {reference:<32} {label:<32} {text}")
        finally:
            client.close()

    def send_crm_events(self, web_url: str) -> None:
        self.step("The Salesforce sandbox relays signed Account change events")
        self.crm = crm_scenario_build(self.salesforce)
        with httpx.Client(timeout=10) as client:
            for label, event in self.crm.events:
                response = self.salesforce.deliver(event, f"{web_url}/api/webhooks/salesforce/", client=client)
                status = response.json().get("status", response.json().get("error"))
                self.say(f"  {response.status_code} {status:<9} {label}")

    def report_crm(self, tryton: TrytonServer) -> None:
        self.step("Where each CRM account ended up (ERP read back from Tryton; write-back read from the CRM)")
        client = TrytonClient(tryton.url, tryton.database, **tryton.credentials())
        try:
            self.say(f"  {'Salesforce account':<20} {'scenario':<26} {'hub status':<10} {'ERP party':<10} "
                     f"{'ERP name':<26} {'parent in ERP':<15} {'ERP_Id__c in CRM'}")
            for account_id, label in self.crm.accounts.items():
                xref = CrossReference.objects.filter(system="salesforce", object_type="customer",
                                                     external_id=account_id).first()
                customer = Customer.objects.filter(pk=xref.canonical_id).first() if xref else None
                party = (client.call("party.party", "search_read", [("code", "=", f"HUB-{customer.pk}")], 0, None,
                                     None, ["code", "name", "identifiers"]) if customer else [])
                parent = "-"
                if party and party[0]["identifiers"]:
                    codes = client.call("party.identifier", "read", party[0]["identifiers"], ["code"])
                    parent = next((c["code"].split(":", 1)[1] for c in codes if c["code"].startswith("parent:")), "-")
                self.say(f"  {account_id:<20} {label:<26} {customer.status if customer else 'failed':<10} "
                         f"{party[0]['code'] if party else '-':<10} {party[0]['name'][:26] if party else '-':<26} "
                         f"{parent:<15} {self.salesforce.accounts[account_id].get('ERP_Id__c') or '-'}")
        finally:
            client.close()
        self.say(f"  billing customers created in Stripe: {len(self.stripe_api.customers)}; "
                 f"held as possible duplicates: {Customer.objects.filter(status='held').count()} "
                 "(see Duplicate cases in the admin)")

    def follow(self, timeout: float, what: str = "Following the deliveries to the ERP (posting takes about a "
                                                 "second per invoice)") -> None:
        self.step(what)
        deadline, last = time.monotonic() + timeout, None
        while True:
            events_open = InboundEvent.objects.filter(status=InboundEvent.Status.RECEIVED).count()
            counts = {status: Delivery.objects.filter(status=status).count() for status in Delivery.Status.values}
            line = (f"  inbox: {events_open} to process | deliveries: {counts['posted']} posted, "
                    f"{counts['pending'] + counts['in_flight']} in progress, {counts['dead']} dead")
            if line != last:
                self.say(f"{line}   [{time.monotonic() - self.started:6.1f}s]")
                last = line
            if not events_open and not counts["pending"] and not counts["in_flight"] and counts["posted"]:
                return
            if time.monotonic() > deadline:
                raise CommandError(f"deliveries did not finish within {timeout:.0f}s; see {self.log_dir}")
            if any(process.poll() is not None for process in self.processes):
                raise CommandError(f"a hub process exited; see the logs in {self.log_dir}")
            time.sleep(0.5)

    def report(self, tryton: TrytonServer) -> None:
        self.step("Where each invoice ended up in the ERP (read back from Tryton)")
        client = TrytonClient(tryton.url, tryton.database, **tryton.credentials())
        try:
            self.say(f"  {'Stripe invoice':<32} {'scenario':<28} {'billed':>12}   {'ERP company':<18} "
                     f"{'number':<7} {'state':<10} {'ERP total':>12}")
            for reference, label in self.scenario.invoices.items():
                billed = Invoice.objects.filter(source_id=reference).first()
                billed_text = f"{to_major(billed.total, billed.currency)} {billed.currency}" if billed else "-"
                found = client.call("account.invoice", "search_read", [("reference", "=", reference)], 0, None,
                                    None, ["number", "state", "total_amount", "currency.code", "company.rec_name",
                                           "type"])
                if not found:
                    self.say(f"  {reference:<32} {label:<28} {billed_text:>12}   NOT IN THE ERP")
                for row in found:
                    self.say(f"  {reference:<32} {label:<28} {billed_text:>12}   {row['company.']['rec_name'][:18]:<18} "
                             f"{row['number'] or '-':<7} {row['state']:<10} "
                             f"{row['total_amount']:>8} {row['currency.']['code']}")
            credits = client.call("account.invoice", "search_count", [("type", "=", "out"),
                                                                      ("total_amount", "<", 0)])
            self.say(f"  credit notes in the ERP: {credits}")
        finally:
            client.close()
        ignored = InboundEvent.objects.filter(status=InboundEvent.Status.IGNORED).count()
        duplicates = sum(1 for d in self.scenario.deliveries) - InboundEvent.objects.filter(
            external_id__in=[d.event["id"] for d in self.scenario.deliveries]).count()
        open_exceptions = ExceptionRecord.objects.filter(status=ExceptionRecord.Status.OPEN).count()
        self.say(f"  inbox: {ignored} ignored, {duplicates} duplicate(s) dropped; open exceptions: {open_exceptions}")

    def catalog_scenario(self, tryton: TrytonServer, timeout: float) -> None:
        """Pull the product platform's catalog, approve it, change a price, approve that."""
        from django.contrib.auth.models import Permission

        from canonical.models import PriceVersion, ProductVersion
        from connectors.models import Connection
        from connectors.product_platform.sandbox import ProductPlatformSandbox
        from integration_hub.workflows.catalog import version_decide, versions_approve
        from integration_hub.workflows.catalog_pull import catalog_pull_now

        self.step("Catalog: the product platform's catalog is pulled into draft versions")
        self.platform = ProductPlatformSandbox()
        self.platform.serve()
        connection_upsert(name="catalog", vendor="product_platform", role="product",
                          config=self.platform.connection_config(), credentials=self.platform.credentials())
        catalog = Connection.objects.get(name="catalog")
        run = catalog_pull_now(catalog, trigger="demo")
        self.say(f"  pull #{run.pk}: {run.counts['pages']} page(s), {run.counts['items_seen']} items, "
                 f"{run.counts['new_versions']} new draft versions; sent to the ERP or billing: "
                 f"{Delivery.objects.filter(action__startswith='catalog.').count()}")
        approver, _ = get_user_model().objects.get_or_create(username="pat-catalog", defaults={"is_staff": True})
        approver.user_permissions.add(Permission.objects.get(codename="approve_catalog"))
        approver = get_user_model().objects.get(pk=approver.pk)
        done, _ = versions_approve(list(ProductVersion.objects.filter(status="draft"))
                                   + list(PriceVersion.objects.filter(status="draft")), user=approver)
        self.say(f"  {approver.username} (catalog approver) approves {done} versions; releasing…")
        self.follow(timeout)
        self.report_catalog(tryton, ["STARTER", "PRO", "ADDON-API-CALLS", "LEGACY-BASIC"])

        self.step("Catalog: Pro's USD price goes from 99.00 to 109.00 on the platform")
        lookup = "pro-monthly-usd"
        self.platform.price_set(lookup, "109.00")
        run = catalog_pull_now(catalog, trigger="demo")
        draft = PriceVersion.objects.get(price__source_id=lookup, status="draft")
        active = [p for p in self.stripe_api.catalog.prices.values() if p["lookup_key"] == lookup]
        self.say(f"  pull #{run.pk}: {run.counts['new_versions']} new version, {run.counts['unchanged']} unchanged; "
                 f"{draft} waits for approval: {draft.changes}; Stripe still bills "
                 f"{active[0]['unit_amount']} ({active[0]['id']})")
        version_decide(draft, approve=True, user=approver)
        self.say(f"  {approver.username} approves it; releasing…")
        self.follow(timeout)
        for price in (p for p in self.stripe_api.catalog.prices.values() if p["metadata"].get("hub_price") == lookup):
            self.say(f"  Stripe {price['id']}  {price['unit_amount']:>6} {price['currency']}  "
                     f"{'active' if price['active'] else 'archived':<8} lookup_key={price['lookup_key']}")
        self.report_catalog(tryton, ["PRO"])

    def report_catalog(self, tryton: TrytonServer, skus: list[str]) -> None:
        client = TrytonClient(tryton.url, tryton.database, **tryton.credentials())
        companies = tryton.connection_config()["companies"]
        try:
            self.say(f"  {'SKU':<16} {'Tryton product':<22} {'active':<7} {'list USD':>9} {'list EUR':>9} "
                     f"{'list JPY':>9}   Stripe prices (active)")
            for sku in skus:
                found = client.call("product.product", "search_read", [("code", "=", sku)], 0, 1, None,
                                    ["template", "template.name", "active"], context={"active_test": False})
                if not found:
                    self.say(f"  {sku:<16} NOT IN THE ERP")
                    continue
                row = found[0]
                prices = []
                for entity in ("US", "EU", "JP"):
                    value, = client.call("product.template", "read", [row["template"]], ["list_price"],
                                         context={"company": companies[entity]})
                    prices.append(str(value["list_price"] or "-"))
                active = [p for p in self.stripe_api.catalog.prices.values()
                          if p["product"] == sku and p["active"]]
                self.say(f"  {sku:<16} {row['template.']['name'][:22]:<22} {str(bool(row['active'])):<7} "
                         f"{prices[0]:>9} {prices[1]:>9} {prices[2]:>9}   {len(active)}")
        finally:
            client.close()

    def policy_scenario(self, tryton: TrytonServer, web_url: str, timeout: float) -> None:
        """A regional posting policy drafted, dry-run and approved; German VAT, EU reverse
        charge, a KWD and a NOK invoice routed by it; the NOK one waits for its exchange
        rate, which the ECB rate source loads, and posts on replay."""
        from canonical.models import PostingPolicyVersion, PostingRule, Region, TaxMapping
        from canonical.policy_services import policy_dry_run, policy_version_approve, policy_version_draft
        from connectors.rates.sandbox import EcbSandbox
        from integration_hub.operations.services import exceptions_replay
        from integration_hub.workflows.exchange_rates import rates_load

        self.step("Posting policies: a regional version is drafted, dry-run and approved")
        eu = LegalEntity.objects.get(code="EU")
        draft = policy_version_draft(base=PostingPolicyVersion.objects.get(number=1), note="regional (demo)")
        europe = Region.objects.create(code="EU", name="European Union", countries=["AT", "DE", "FR", "IT", "NL"])
        for priority, name, where, cost_center in [(1, "EU customers", {"region": europe}, "CC-EMEA"),
                                                   (2, "Gulf", {"countries": ["KW"]}, "CC-GULF"),
                                                   (3, "Nordics", {"countries": ["NO"]}, "CC-EMEA")]:
            PostingRule.objects.create(version=draft, priority=priority, name=name, legal_entity=eu,
                                       revenue_account="4100", cost_center=cost_center, **where)
        for jurisdiction, rate, status, code in [("DE", 19, "", "DE-VAT-19"), ("EU", 0, "b2b", "EU-RC-0"),
                                                 ("KW", 0, "", ""), ("NO", 0, "", "")]:
            TaxMapping.objects.create(version=draft, jurisdiction=jurisdiction, rate=rate, tax_status=status,
                                      tax_code=code)
        changed = sum(1 for row in policy_dry_run(draft) if row.changed)
        self.console_users()  # paula holds the Policy approver role
        approver = get_user_model().objects.get(username="paula")
        policy_version_approve(draft, user=approver, effective_from=timezone.localdate())
        self.say(f"  v{draft.number}: EU region, Gulf and Nordics → EU entity in the invoice currency; dry run "
                 f"against the last documents: {changed} would change; approved by paula (Policy approver)")

        self.ecb = EcbSandbox()
        self.ecb.serve()
        connection_upsert(name="ecb", vendor="ecb", role="rates",
                          config={"url": self.ecb.url + "/", "currencies": ["NOK"]}, credentials={})
        invoices = {}
        for label, (name, email, country, tax_ids), lines, currency, tax in [
            ("DE B2C, 19 % VAT", ("Max Mustermann", "max@example.de", "DE", ()), [("Seats", 3, 3333)], "eur", 19),
            ("FR B2B, VAT id: reverse charge", ("Dupont SA", "a@dupont.example", "FR", [("eu_vat", "FR40303265045")]),
             [("Seats", 2, 5000)], "eur", None),
            ("KW, 3 decimals (fils)", ("Al Noor Trading", "x@noor.example", "KW", ()),
             [("Platform", 1, 12345), ("Support", 3, 1111)], "kwd", None),
            ("NO, needs a NOK rate", ("Fjord AS", "post@fjord.example", "NO", ()), [("Platform", 1, 123456)],
             "nok", None),
        ]:
            customer = self.sandbox.customer(name, email, country=country, tax_ids=tax_ids)
            invoice = self.sandbox.finalize(self.sandbox.invoice(customer, lines, currency=currency, tax_percent=tax))
            invoices[invoice["id"]] = label
            with httpx.Client(timeout=10) as client:
                self.sandbox.deliver(self.sandbox.event("invoice.finalized", invoice),
                                     f"{web_url}/api/webhooks/stripe/", client=client)
        self.follow(timeout)
        waiting = ExceptionRecord.objects.filter(status=ExceptionRecord.Status.OPEN, summary__contains="NOK exchange")
        for record in waiting:
            self.say(f"  finance exception: {record.summary[:110]}")
        loaded = rates_load()
        self.say(f"  ECB rates of {loaded.published}: {', '.join(loaded.currencies)} planned into "
                 f"{', '.join(loaded.erps)}")
        deadline = time.monotonic() + timeout
        while Delivery.objects.filter(action="exchange_rate.load").exclude(status="posted").exists():
            if time.monotonic() > deadline:
                raise CommandError("the exchange rate did not load; see the worker log")
            time.sleep(0.5)
        fiona = get_user_model().objects.get(username="fiona")  # Finance operations
        replayed = exceptions_replay(waiting, user=fiona, reason="NOK rate loaded")
        self.say(f"  rate loaded; fiona (Finance operations) replays {len(replayed.replayed)} exception(s)")
        self.follow(timeout)

        self.step("Where the policy sent them (read back from Tryton; company amounts as Tryton booked them)")
        client = TrytonClient(tryton.url, tryton.database, **tryton.credentials())
        try:
            for reference, label in invoices.items():
                invoice = Invoice.objects.filter(source_id=reference).select_related("posting_decision").first()
                decision = getattr(invoice, "posting_decision", None)
                found = client.call("account.invoice", "search_read", [("reference", "=", reference)], 0, None, None,
                                    ["state", "total_amount", "tax_amount", "currency.code", "company.rec_name"])
                if not found or decision is None:
                    self.say(f"  {label:<32} NOT IN THE ERP")
                    continue
                row = found[0]
                taxes = ", ".join(sorted({line["tax_code"] or "no tax" for line in decision.lines}))
                company = (f"{to_major(decision.company_total, decision.company_currency)} "
                           f"{decision.company_currency}" if decision.company_total is not None else "-")
                self.say(f"  {label:<32} v{decision.policy_version.number}  {row['company.']['rec_name'][:18]:<18} "
                         f"{row['state']:<7} {row['total_amount']:>9} {row['currency.']['code']}  tax "
                         f"{row['tax_amount']:>6} ({taxes})  = {company}")
        finally:
            client.close()

    def report_console(self, web_url: str) -> None:
        """What the operations dashboard shows now, and what Prometheus scrapes."""
        from integration_hub.operations.dashboard import business_figures, exceptions_by_team

        self.step("The operations console (the dashboard's business figures; /metrics for Prometheus)")
        admin = get_user_model()(username="demo", is_superuser=True, is_active=True)
        for flow in business_figures(admin):
            figures = ", ".join(f"{f.title.split(': ')[-1] if ': ' in f.title else f.title}: {f.value}"
                                for f in flow["figures"])
            self.say(f"  {flow['title']:<30} {figures}")
        for team in exceptions_by_team(admin):
            self.say(f"  open exceptions, {team['team']}: {team['count']} (oldest {team['oldest_age']}, "
                     f"SLA {team['oldest_sla'] or '-'})")
        token = os.environ["HUB_METRICS_TOKEN"]
        body = httpx.get(f"{web_url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10).text
        families = sorted({line.split()[2] for line in body.splitlines() if line.startswith("# TYPE hub_")})
        self.say(f"  /metrics: {len(families)} hub families ({', '.join(families)})")

    def console_users(self) -> list[tuple[str, str]]:
        """One demo login per role, to see the scoping (password = username)."""
        from django.contrib.auth.models import Group

        users = [("fiona", "Finance operations"), ("paula", "Policy approver"), ("sam", "Sales operations"),
                 ("ivan", "IT operations"), ("rita", "Read-only")]
        for username, group in users:
            user, created = get_user_model().objects.get_or_create(username=username, defaults={"is_staff": True})
            if created:
                user.set_password(username)
                user.save()
            user.groups.add(Group.objects.get(name=group))
        return users

    def explore(self, web_url: str) -> None:
        user, created = get_user_model().objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True})
        if created:
            user.set_password("admin")
            user.save()
        token, _ = Token.objects.get_or_create(user=user)
        roles = ", ".join(f"{name} ({group})" for name, group in self.console_users())
        self.say(f"\n  Admin:  {web_url}/admin/  (admin / admin — a demo account)\n"
                 f"  Roles:  {roles} — the password is the user name\n"
                 f"  Console: {web_url}/admin/dashboard/  ·  {web_url}/admin/inventory/\n"
                 f"  API:    curl -H 'Authorization: Token {token.key}' {web_url}/api/deliveries/\n"
                 f"  Docs:   {web_url}/api/schema/swagger/ and /api/schema/redoc/ (signed in)\n"
                 f"  Metrics: curl -H 'Authorization: Bearer {os.environ['HUB_METRICS_TOKEN']}' {web_url}/metrics\n"
                 "  Ctrl-C stops everything.")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()

    def stop_processes(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
