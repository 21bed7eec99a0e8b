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
