from django.core.management.base import BaseCommand, CommandError

from canonical.schemas_io import BreakingChange, schemas_publish


class Command(BaseCommand):
    help = ("Regenerate the published JSON Schemas of the canonical contracts (canonical/schemas/); "
            "refuses to overwrite a published version with a breaking change.")

    def handle(self, *args, **options):
        try:
            written = schemas_publish()
        except BreakingChange as exc:
            raise CommandError(str(exc)) from exc
        for path in written:
            self.stdout.write(f"wrote {path}")
