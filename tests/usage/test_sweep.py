"""The usage sweep (beat's ``hub.usage_sweep`` and ``manage.py hub_sweep``) loads again a
batch whose worker died, once its load lease has passed, and leaves a live load alone."""

import datetime as dt
import io

from django.core.management import call_command
from django.utils import timezone

from integration_hub.usage import tasks
from integration_hub.usage.models import UsageBatch
from integration_hub.usage.services import batch_load, batch_receive
from tests.usage.conftest import csv_file

T = "2025-01-15T10:00:00Z"


def test_a_load_past_its_lease_is_sent_again_and_a_live_one_is_left_alone(known, settings, monkeypatch, capsys):
    settings.HUB_USAGE_LOAD_LEASE_SECONDS = 120
    known("sub_1")
    batch = batch_receive(stream=io.BytesIO(csv_file(f"e1,sub_1,m,1,{T}", f"e2,sub_1,m,2,{T}").encode()),
                          filename="jan.csv", source="shell", load=False)
    now = timezone.now()
    UsageBatch.objects.filter(pk=batch.pk).update(status="loading", started_at=now - dt.timedelta(seconds=60),
                                                  created_at=now - dt.timedelta(minutes=10))
    sent: list[int] = []
    monkeypatch.setattr(tasks.usage_batch_load_task, "delay", sent.append)

    assert tasks.usage_sweep_task() == [] and sent == []  # within its lease: a worker may still be loading it

    UsageBatch.objects.filter(pk=batch.pk).update(started_at=now - dt.timedelta(seconds=121))
    call_command("hub_sweep")
    assert sent == [batch.pk]
    assert "1 usage batch load(s) restarted" in capsys.readouterr().out

    loaded = batch_load(batch.pk)  # what the sent task does: the dead attempt's rows go, the file loads again
    assert (loaded.status, loaded.read, loaded.loaded) == ("loaded", 2, 2)
    assert tasks.usage_sweep_task() == [] and sent == [batch.pk]  # loaded: nothing to send again


def test_a_second_load_of_a_batch_being_loaded_leaves_it_alone(known):
    """Two messages for one batch (the sweep re-sent it; two usage workers): the second
    finds the batch taken and returns, instead of resetting the first one's stage."""
    import psycopg
    import pytest
    from django.db import connection

    from integration_hub.usage.services import _LOAD_LOCK_CLASS

    if connection.vendor != "postgresql":
        pytest.skip("the load lock is PostgreSQL's advisory lock; SQLite runs one process")
    known("sub_1")
    batch = batch_receive(stream=io.BytesIO(csv_file(f"e1,sub_1,m,1,{T}").encode()), filename="jan.csv",
                          source="shell", load=False)
    db = connection.settings_dict
    with psycopg.connect(dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"] or None,
                         host=db["HOST"] or None, port=db["PORT"] or None, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [_LOAD_LOCK_CLASS, batch.pk])  # another worker's load
        assert batch_load(batch.pk).status == "received"
        assert UsageBatch.objects.get(pk=batch.pk).read == 0
        other.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOAD_LOCK_CLASS, batch.pk])
    assert (batch_load(batch.pk).status, UsageBatch.objects.get(pk=batch.pk).loaded) == ("loaded", 1)
