"""Run the sweeper by hand: once (after an outage, to re-enqueue at once) or in a
loop (where beat is not running)."""

import time

from django.core.management.base import BaseCommand
from django.db import DatabaseError, connections

from integration_hub.runtime.services import sweep


class Command(BaseCommand):
    help = "Re-enqueue inbox events and deliveries whose broker message was lost; recover dead workers' deliveries."

    def add_arguments(self, parser):
        parser.add_argument("--every", type=float, default=0, help="repeat every N seconds until interrupted")

    def handle(self, *args, every: float, **options):
        while True:
            try:
                report = sweep()
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
                f"{report.in_flight_recovered} in-flight recovered"
            )
            if not every:
                return
            time.sleep(every)
