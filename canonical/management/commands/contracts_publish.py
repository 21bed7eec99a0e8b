from django.core.management.base import BaseCommand

from canonical.schemas_io import schemas_publish


class Command(BaseCommand):
    help = "Regenerate the published JSON Schemas of the canonical contracts (canonical/schemas/)."

    def handle(self, *args, **options):
        for path in schemas_publish():
            self.stdout.write(f"wrote {path}")
