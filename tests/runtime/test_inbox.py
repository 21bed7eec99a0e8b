"""The inbox: an accepted event is committed before anyone hears of it, its message is
sent after that commit, a duplicate is one row, and events about one object share its
business transaction -- on every path ``inbound_accept`` can take."""

import datetime as dt

import pytest
from django.db import connection, transaction

from connectors.base import ReceivedEvent
from connectors.errors import MalformedPayload
from integration_hub.runtime import services
from integration_hub.runtime.models import BusinessTransaction, InboundEvent

pytestmark = pytest.mark.django_db(transaction=True)


def _event(event_id: str, subject: str = "invoice:in_1", **payload) -> ReceivedEvent:
    return ReceivedEvent(external_id=event_id, type="invoice.finalized", subject=subject,
                         payload={"id": event_id, **payload}, occurred_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, int, bool]]:
    """Each message sent: (task, id, whether the inbox row was committed and visible then)."""
    from integration_hub.celery import app

    messages: list[tuple[str, int, bool]] = []

    def record(name, args=None, **options):
        committed = not connection.in_atomic_block and InboundEvent.objects.filter(pk=args[0]).exists()
        messages.append((name, args[0], committed))

    monkeypatch.setattr(app, "send_task", record)
    return messages


def test_an_accepted_event_is_committed_before_its_message_is_sent(sent):
    row, created = services.inbound_accept(source="stripe", event=_event("evt_1"))
    assert created
    assert sent == [(services.PROCESS_TASK, row.pk, True)]
    stored = InboundEvent.objects.get(pk=row.pk)
    assert (stored.transaction_id, stored.payload, stored.status) == (row.transaction_id, {"id": "evt_1"}, "received")
    assert BusinessTransaction.objects.get(pk=row.transaction_id).subject == "stripe:invoice:in_1"


def test_a_duplicate_is_answered_with_the_first_row_and_sends_nothing(sent):
    first, _ = services.inbound_accept(source="stripe", event=_event("evt_1"))
    again, created = services.inbound_accept(source="stripe", event=_event("evt_1", changed=True))
    assert not created
    assert again.pk == first.pk and again.payload == {"id": "evt_1"}
    assert InboundEvent.objects.count() == 1 and len(sent) == 1


def test_events_about_one_object_share_its_business_transaction(sent):
    first, _ = services.inbound_accept(source="stripe", event=_event("evt_1"))
    second, created = services.inbound_accept(source="stripe", event=_event("evt_2"))
    assert created and second.transaction_id == first.transaction_id
    assert BusinessTransaction.objects.count() == 1


def test_when_the_one_statement_cannot_see_a_concurrent_business_transaction_the_event_is_still_stored(
        sent, monkeypatch):
    # The race: another request committed the subject's business transaction while the
    # statement ran; the statement inserts nothing, which must not read as a duplicate.
    first, _ = services.inbound_accept(source="stripe", event=_event("evt_1"))
    monkeypatch.setattr(services, "insert_ignore_with_parent", lambda *args, **kwargs: None)
    second, created = services.inbound_accept(source="stripe", event=_event("evt_2"))
    assert created and second.transaction_id == first.transaction_id
    assert InboundEvent.objects.filter(pk=second.pk).exists()
    assert sent[-1] == (services.PROCESS_TASK, second.pk, True)


def test_inside_a_callers_transaction_the_message_waits_for_its_commit(sent):
    with transaction.atomic():
        row, created = services.inbound_accept(source="stripe", event=_event("evt_1"))
        assert created and sent == []
    assert sent == [(services.PROCESS_TASK, row.pk, True)]


def test_a_caller_that_rolls_back_leaves_no_row_and_sends_nothing(sent):
    with pytest.raises(RuntimeError), transaction.atomic():
        services.inbound_accept(source="stripe", event=_event("evt_1"))
        raise RuntimeError("the caller fails after accepting")
    assert InboundEvent.objects.count() == 0 and BusinessTransaction.objects.count() == 0 and sent == []


def test_a_payload_the_inbox_cannot_hold_is_refused_before_the_database(sent, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the database was reached")

    monkeypatch.setattr(services, "insert_ignore_with_parent", never)
    with pytest.raises(MalformedPayload, match="NUL"):
        services.inbound_accept(source="stripe", event=_event("evt_1", name="a\x00b"))
    assert InboundEvent.objects.count() == 0 and sent == []
