"""Run the sweeper by hand: once (after an outage, to re-enqueue at once) or in a
loop (where beat is not running). It runs the usage sweep too (``hub.usage_sweep``:
stalled batch loads sent again, held usage matched, the drop folder read)."""

import time

from django.core.management.base import BaseCommand
from django.db import DatabaseError, connections

from integration_hub.runtime.services import sweep
from integration_hub.usage.tasks import usage_sweep_task


class Command(BaseCommand):
    help = "Re-enqueue inbox events and deliveries whose broker message was lost; recover dead workers' deliveries."

    def add_arguments(self, parser):
        parser.add_argument("--every", type=float, default=0, help="repeat every N seconds until interrupted")

    def handle(self, *args, every: float, **options):
        while True:
            try:
                report = sweep()
                restarted = usage_sweep_task()
            except DatabaseError as exc:
                if not every:
                    raise
                # The database is restarting or unreachable: keep looping, reconnect next time.
                self.stderr.write(f"sweep failed, retrying in {every}s: {exc}")
                connections.close_all()
                time.sleep(every)
                continue
            self.stdout.write(
                f"sweep: {report.inbound_requeued} inbox events, {report.deliveries_requeued} deliveries re-enqueued, "
                f"{report.in_flight_recovered} in-flight recovered, {len(restarted)} usage batch load(s) restarted"
            )
            if not every:
                return
            time.sleep(every)
