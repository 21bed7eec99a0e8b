"""``manage.py rotate_encryption_keys``: re-encrypt every credential with the newest key.

Key rotation: put the new Fernet key first in HUB_ENCRYPTION_KEYS (keep the old ones
after it), restart, run this command, then remove the old keys.
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from connectors.services import credentials_rotate


class Command(BaseCommand):
    help = "Re-encrypt every connection's credentials with the first HUB_ENCRYPTION_KEYS key."

    def handle(self, *args, **options):
        if not settings.HUB_ENCRYPTION_KEYS:
            raise CommandError("HUB_ENCRYPTION_KEYS is empty: set the new key first, the old ones after it")
        rotated = credentials_rotate()
        self.stdout.write(f"re-encrypted {rotated} connection(s) with the newest key; "
                          "the older keys can now be removed from HUB_ENCRYPTION_KEYS")
