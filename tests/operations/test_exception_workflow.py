"""The exception workflow: open → acknowledged → resolved or dismissed with a reason,
an assignee from the owning team, notes, SLA highlighting and e-mail to the team."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.utils import timezone

from integration_hub.operations.notifications import exceptions_notify
from integration_hub.runtime.models import AuditEntry, ExceptionRecord

pytestmark = pytest.mark.django_db(transaction=True)


def test_acknowledge_assign_note_and_dismiss_through_the_api(people, token_client, two_teams):
    record = two_teams["rejected"]
    fiona = token_client(people["finance"])

    acknowledged = fiona.post(f"/api/exceptions/{record.pk}/acknowledge/", {"note": "looking"}, format="json")
    assert acknowledged.status_code == 202
    assert acknowledged.json()["status"] == "acknowledged" and acknowledged.json()["assignee"] == "fiona"

    # Only a member of the owning team can be given it.
    wrong = fiona.post(f"/api/exceptions/{record.pk}/assign/", {"assignee": "sam"}, format="json")
    assert wrong.status_code == 400 and "cannot work" in wrong.json()["detail"]
    assert fiona.post(f"/api/exceptions/{record.pk}/assign/", {"assignee": None}, format="json").json()[
        "assignee"] is None

    assert fiona.post(f"/api/exceptions/{record.pk}/notes/", {"text": "ERP lacks the 10 % tax"},
                      format="json").status_code == 201
    assert [n["text"] for n in fiona.get(f"/api/exceptions/{record.pk}/notes/").json()] == [
        "looking", "ERP lacks the 10 % tax"]

    no_reason = fiona.post(f"/api/exceptions/{record.pk}/close/", {"status": "dismissed", "reason": " "},
                           format="json")
    assert no_reason.status_code == 400
    dismissed = fiona.post(f"/api/exceptions/{record.pk}/close/",
                           {"status": "dismissed", "reason": "test invoice, voided in billing"}, format="json")
    assert dismissed.status_code == 202 and dismissed.json()["status"] == "dismissed"
    assert fiona.post(f"/api/exceptions/{record.pk}/replay/", {"reason": "x"}, format="json").status_code == 409

    actions = list(AuditEntry.objects.filter(object_id=str(record.pk), object_type="exceptionrecord")
                   .order_by("pk").values_list("action", "actor__username"))
    assert actions == [("acknowledge", "fiona"), ("assign", "fiona"), ("note", "fiona"), ("dismiss", "fiona")]


def test_an_acknowledged_exception_can_still_be_replayed(people, token_client, two_teams, memory_erp, sent_tasks):
    from tests.helpers import drain

    record = two_teams["rejected"]
    fiona = token_client(people["finance"])
    fiona.post(f"/api/exceptions/{record.pk}/acknowledge/", {}, format="json")
    assert fiona.post(f"/api/exceptions/{record.pk}/replay/", {"reason": "tax added in the ERP"},
                      format="json").status_code == 202
    drain(sent_tasks)
    record.refresh_from_db()
    assert record.status == "resolved" and record.delivery.status == "posted"


def test_high_severity_exceptions_and_sla_breaches_are_mailed_once_to_the_owning_team(people, two_teams, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.HUB_TEAM_EMAILS = {"it_operations": ["oncall@example.com"]}

    first = exceptions_notify()
    # Configuration is high severity: IT hears about it at once; finance's are normal.
    assert (first.announced, first.breaches) == (1, 0)
    [message] = mail.outbox
    assert sorted(message.to) == ["ivan@example.com", "oncall@example.com"]
    assert "ERP login expired" in message.body
    assert exceptions_notify() == type(first)(announced=0, breaches=0)

    # Two days later every open one is past its SLA: each team hears once.
    later = exceptions_notify(now=timezone.now() + dt.timedelta(days=2))
    assert later.breaches == 3
    assert sorted(tuple(m.to) for m in mail.outbox[1:]) == [
        ("fiona@example.com",), ("ivan@example.com", "oncall@example.com")]
    assert exceptions_notify(now=timezone.now() + dt.timedelta(days=3)).breaches == 0


def test_a_failed_send_is_tried_again_on_the_next_pass(people, two_teams, settings, monkeypatch):
    from integration_hub.operations import notifications

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr(notifications, "send_mail", refuse)
    assert exceptions_notify().announced == 0
    assert ExceptionRecord.objects.filter(notified_at__isnull=False).count() == 0
    monkeypatch.undo()
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert exceptions_notify().announced == 1


def test_the_admin_highlights_age_against_the_sla_and_filters_breaches(people, client, two_teams):
    ExceptionRecord.objects.filter(pk=two_teams["configuration"].pk).update(
        created_at=timezone.now() - dt.timedelta(hours=3))
    client.force_login(people["it"])
    page = client.get("/admin/runtime/exceptionrecord/").content.decode()
    assert "sla-breached" in page and "SLA 2 h" in page
    breached = client.get("/admin/runtime/exceptionrecord/?sla=breached").content.decode()
    assert "ERP login expired" in breached
    client.force_login(people["finance"])
    assert "sla-breached" not in client.get("/admin/runtime/exceptionrecord/?sla=breached").content.decode()
