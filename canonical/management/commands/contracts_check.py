from django.core.management.base import BaseCommand, CommandError

from canonical.compat import contracts_check


class Command(BaseCommand):
    help = ("Compare the published JSON Schemas (canonical/schemas/) with the contracts in the code: fail on a "
            "removed or retyped field, a new required field, a lowered or an unpublished version, unless the "
            "version number goes up.")

    def handle(self, *args, **options):
        failures, notes = contracts_check()
        for note in notes:
            self.stdout.write(f"note: {note}")
        if failures:
            raise CommandError("contracts_check failed:\n  " + "\n  ".join(failures))
        self.stdout.write(self.style.SUCCESS("contracts_check: every contract matches its published schema"))
