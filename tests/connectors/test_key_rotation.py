"""Key rotation: after ``rotate_encryption_keys`` the old key can be retired."""

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from connectors import secrets
from connectors.models import Connection
from connectors.services import connection_upsert

pytestmark = pytest.mark.django_db

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture
def keys(settings):
    def use(*values):
        settings.HUB_ENCRYPTION_KEYS = list(values)
        secrets.keys_reload()

    yield use
    secrets.keys_reload()


def test_rotation_re_encrypts_every_credential_so_the_old_key_can_go(keys, capsys):
    keys(OLD)
    connection_upsert(name="erp", vendor="memory-erp", role="erp", config={}, credentials={"password": "pw"})
    connection_upsert(name="stripe", vendor="stripe", role="billing", config={}, credentials={"api_key": "sk"})

    keys(NEW, OLD)
    call_command("rotate_encryption_keys")
    assert "re-encrypted 2 connection(s)" in capsys.readouterr().out

    keys(NEW)  # the old key retired
    assert Connection.objects.get(name="erp").credentials == {"password": "pw"}
    assert Connection.objects.get(name="stripe").credentials == {"api_key": "sk"}


def test_without_rotation_retiring_the_old_key_loses_the_credentials(keys):
    keys(OLD)
    connection_upsert(name="erp", vendor="memory-erp", role="erp", config={}, credentials={"password": "pw"})
    keys(NEW)
    with pytest.raises(ImproperlyConfigured):
        _ = Connection.objects.get(name="erp").credentials


def test_a_credential_no_key_can_read_stops_the_rotation_loudly(keys):
    keys(OLD)
    connection_upsert(name="erp", vendor="memory-erp", role="erp", config={}, credentials={"password": "pw"})
    keys(NEW)
    with pytest.raises(ImproperlyConfigured):
        call_command("rotate_encryption_keys")


def test_rotation_needs_configured_keys(keys):
    keys()
    with pytest.raises(CommandError, match="HUB_ENCRYPTION_KEYS is empty"):
        call_command("rotate_encryption_keys")
