"""Which broker queue a generic task goes to.

``hub.process_inbound`` and ``hub.deliver`` carry only an id, so no task route can tell a
finance posting from a catalog release: the sender chooses, from what it knows — the
delivery's action, or the business-transaction kind of the inbound event. Every sender
(first send, retry, hold, wake, replay, sweeper) asks here, so a message always lands on
the queue of its workflow's class (``dispatch.QueueClass``), named by ``settings.HUB_QUEUES``.
"""

from __future__ import annotations

from django.conf import settings

from integration_hub.runtime import dispatch


def queue_of_class(queue_class: str) -> str:
    return settings.HUB_QUEUES[queue_class]


def delivery_queue(action: str) -> str:
    """The queue of a delivery of ``action``: its workflow's (the default queue for an
    action no workflow registers; its attempt dead-letters it there)."""
    try:
        workflow = dispatch.workflow_of_action(action)
    except LookupError:
        return queue_of_class(dispatch.QueueClass.DEFAULT)
    return queue_of_class(workflow.queue)


def inbound_queue(kind: str) -> str:
    """The queue of an inbound event about a business transaction of ``kind`` (the part
    of its subject before ':'): the owning workflow's, else the default queue."""
    workflow = dispatch.workflow_of_subject(kind)
    return queue_of_class(workflow.queue if workflow else dispatch.QueueClass.DEFAULT)
