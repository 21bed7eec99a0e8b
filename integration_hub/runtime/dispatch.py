"""The workflow registry: where workflows plug into the runtime, by declaration.

Each workflow module ends with one ``register_workflow(Workflow(...))``: the facts it
handles, the facts it resolves by reading a source first, the delivery actions it
carries out, the records its transactions touch (for the trace), its correction hook
(edit-and-replay), its failure rows, the team that owns its data and its queue class.
The runtime and the operations layer read this registry and never import a workflow.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from integration_hub.runtime.failures import Failure, register_failure

if TYPE_CHECKING:
    from connectors.base import Batching, Connector, ExternalDocument
    from integration_hub.runtime.models import Delivery, InboundEvent

FactHandler = Callable[[Any, "InboundEvent"], None]
# Turns a fact that needs I/O (e.g. reading the current record from its source) into
# the facts it stands for, before the event's database transaction opens.
FactResolver = Callable[[Any], list]


class CorrectionRejected(ValueError):
    """A correction would leave the record invalid (or cannot be made); nothing changed."""


@dataclass(frozen=True)
class BatchSend:
    """Several deliveries of one action in one connector operation, where the connector
    offers it (``capability``; ``batching(connector)`` is its declaration).

    ``send(connector, deliveries)`` returns each delivery's answer in order: the
    document, or the error the single ``send`` would raise for it. It raises only for
    what befalls the batch as a whole (the target unreachable, a timeout), and must be
    safe to repeat by itself: after an unknown outcome the whole batch is sent again.
    """

    capability: type
    batching: Callable[[Connector], Batching]
    send: Callable[[Connector, Sequence[Delivery]], Sequence[ExternalDocument | Exception]]


@dataclass(frozen=True)
class DeliveryAction:
    """How to carry out one kind of delivery.

    ``send`` calls the connector and returns what the target answered; ``bind``
    records the answer (cross-references) inside the transaction that marks the
    delivery posted; ``capability`` is the connector interface the action needs.

    ``lookup`` finds the effect in the target without causing it. The runtime calls
    it before ``send`` when the previous attempt's outcome is unknown (a timeout
    after sending, a lost worker): a document it returns is recorded as the answer
    and ``send`` is not called. An action without one must have a ``send`` that is
    safe to repeat by itself (a vendor idempotency key, an update that sets a value,
    a check of the target's state first), and say how in its docstring.

    ``batch``, where the connector offers it, carries the action out for several due
    deliveries to one connection at once (a backlog after a maintenance window).
    """

    name: str
    capability: type
    send: Callable[[Connector, Delivery], ExternalDocument]
    bind: Callable[[Delivery, ExternalDocument], None]
    lookup: Callable[[Connector, Delivery], ExternalDocument | None] | None = None
    batch: BatchSend | None = None


@dataclass(frozen=True)
class TraceSection:
    """A kind of record a workflow's transactions touch, as the trace shows it.

    ``rows(transaction_id, delivered)`` returns the records the transaction created
    or delivered (``delivered``: ids by object type of its deliveries), each a dict
    with at least ``id``; the trace adds their cross-references by ``object_type``.
    """

    key: str
    object_type: str
    rows: Callable[[uuid.UUID, Mapping[str, set[int]]], list[dict[str, Any]]]


@dataclass(frozen=True)
class Correction:
    """Edit-and-replay for a workflow's deliveries.

    ``template(delivery)`` is what a person edits: the correctable fields of the
    canonical record the delivery carries. ``apply(delivery, changes, *, user,
    reason)`` writes the edited fields (audited), raising CorrectionRejected if the
    result would be invalid; the operations layer then replays the delivery.
    """

    template: Callable[[Delivery], dict[str, Any]]
    apply: Callable[..., None]


@dataclass(frozen=True)
class Indicator:
    """A business figure the dashboard shows for a workflow, and the list behind it.

    ``model`` is an ``app_label.ModelName``; ``filters`` are admin changelist lookups
    (query-string form: ``{"status__in": "pending,held"}``). The figure is one COUNT
    over exactly those filters, and links to the changelist filtered the same way, so
    the number and the list can never disagree. Filter on indexed, unfinished states
    (open, pending) so the count stays cheap as history grows.
    """

    key: str
    title: str
    model: str
    filters: Mapping[str, str]
    team: str = ""
    """The team that acts on it (``ExceptionRecord.Team``), if one does."""
    help: str = ""


class QueueClass(StrEnum):
    """The broker queue a workflow's tasks travel on (``settings.HUB_QUEUES`` names each).

    One class per kind of work that must not wait behind another: finance postings never
    queue behind a bulk catalog release or usage load. Work no workflow claims (the sweep,
    beat's housekeeping, events of a kind no workflow owns) stays on the default queue.
    """

    DEFAULT = "default"
    FINANCE = "finance"
    CUSTOMER = "customer"
    CATALOG = "catalog"
    USAGE = "usage"


@dataclass(frozen=True)
class Workflow:
    name: str
    title: str
    pattern: str
    data_owner: str
    """The team (``ExceptionRecord.Team``) that fixes this workflow's data faults."""
    queue: QueueClass = QueueClass.DEFAULT
    """Where its inbound events and deliveries are processed (``runtime.routing``)."""
    source_role: str = ""
    """The role (``Connection.Role``) of the system its data comes from."""
    target_roles: tuple[str, ...] = ()
    """The roles of the systems it delivers to (the inventory lists their connections)."""
    contracts: tuple[type, ...] = ()
    """The canonical contracts (``canonical.contracts.Contract`` classes) it carries."""
    indicators: tuple[Indicator, ...] = ()
    """Business figures for the dashboard (what is stuck, what waits)."""
    policy_in_force: Callable[[], str] | None = None
    """Describes the posting policy (and its version) the workflow applies now, for the inventory."""
    subjects: tuple[str, ...] = ()
    """Kinds of business transaction it owns (the part before ':' of an event's subject)."""
    facts: Mapping[type, FactHandler] = field(default_factory=dict)
    resolvers: Mapping[type, FactResolver] = field(default_factory=dict)
    actions: tuple[DeliveryAction, ...] = ()
    trace: tuple[TraceSection, ...] = ()
    correct: Correction | None = None
    failures: Mapping[type[BaseException], Failure] = field(default_factory=dict)


_workflows: dict[str, Workflow] = {}
_fact_handlers: dict[type, FactHandler] = {}
_fact_resolvers: dict[type, FactResolver] = {}
_actions: dict[str, tuple[DeliveryAction, Workflow]] = {}
_subjects: dict[str, Workflow] = {}


def register_workflow(workflow: Workflow) -> Workflow:
    """Plug a workflow in. A name, fact type, action or subject claimed twice is
    a programming error, caught at start-up."""
    for registry, keys, what in (
        (_workflows, [workflow.name], "workflow"),
        (_fact_handlers, workflow.facts, "fact"),
        (_fact_resolvers, workflow.resolvers, "resolver for"),
        (_actions, [action.name for action in workflow.actions], "action"),
        (_subjects, workflow.subjects, "subject"),
    ):
        for key in keys:
            if key in registry:
                raise ValueError(f"{what} {getattr(key, '__name__', key)} is already registered by another workflow")
    _workflows[workflow.name] = workflow
    _fact_handlers.update(workflow.facts)
    _fact_resolvers.update(workflow.resolvers)
    _actions.update({action.name: (action, workflow) for action in workflow.actions})
    _subjects.update(dict.fromkeys(workflow.subjects, workflow))
    for exc_class, failure in workflow.failures.items():
        register_failure(exc_class, failure)
    return workflow


def workflows() -> Iterable[Workflow]:
    return _workflows.values()


def workflow_named(name: str) -> Workflow:
    try:
        return _workflows[name]
    except KeyError:
        raise LookupError(f"no workflow {name!r} is registered") from None


def indicator_lookups(model_label: str) -> set[str]:
    """Every filter the registered indicators put on ``model_label``'s changelist
    (the admin allows these lookups on its links)."""
    return {
        lookup
        for workflow in _workflows.values()
        for indicator in workflow.indicators
        if indicator.model.lower() == model_label.lower()
        for lookup in indicator.filters
    }


def fact_handler(fact: Any) -> FactHandler:
    try:
        return _fact_handlers[type(fact)]
    except KeyError:
        raise LookupError(f"no workflow handles {type(fact).__name__}") from None


def facts_resolve(facts: list) -> list:
    """Each fact, or what its resolver says it stands for (facts without one pass)."""
    resolved: list = []
    for fact in facts:
        resolver = _fact_resolvers.get(type(fact))
        resolved.extend(resolver(fact) if resolver else [fact])
    return resolved


def delivery_action(name: str) -> DeliveryAction:
    return _action_entry(name)[0]


def workflow_of_action(name: str) -> Workflow:
    return _action_entry(name)[1]


def _action_entry(name: str) -> tuple[DeliveryAction, Workflow]:
    try:
        return _actions[name]
    except KeyError:
        raise LookupError(f"no delivery action {name!r} is registered") from None


def workflow_of_subject(kind: str) -> Workflow | None:
    """The workflow owning business transactions of ``kind``, if one does."""
    return _subjects.get(kind)


def data_owner(kind: str, default: str) -> str:
    """The team owning the data of a business transaction of ``kind``."""
    workflow = _subjects.get(kind)
    return workflow.data_owner if workflow else default
