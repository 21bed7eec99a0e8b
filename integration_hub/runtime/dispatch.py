"""Where workflows plug into the runtime, by name rather than by import.

Workflows register a handler per canonical fact type and a sender per delivery
action; the runtime looks them up, so it never imports a workflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.base import Connector, ExternalDocument
    from integration_hub.runtime.models import Delivery, InboundEvent

FactHandler = Callable[[Any, "InboundEvent"], None]
# Turns a fact that needs I/O (e.g. reading the current record from its source) into
# the facts it stands for, before the event's database transaction opens.
FactResolver = Callable[[Any], list]


@dataclass(frozen=True)
class DeliveryAction:
    """How to carry out one kind of delivery.

    ``send`` calls the connector and returns what the target answered; ``bind``
    records the answer (cross-references) inside the transaction that marks the
    delivery posted; ``capability`` is the connector interface the action needs.
    """

    name: str
    capability: type
    send: Callable[[Connector, Delivery], ExternalDocument]
    bind: Callable[[Delivery, ExternalDocument], None]


_fact_handlers: dict[type, FactHandler] = {}
_fact_resolvers: dict[type, FactResolver] = {}
_actions: dict[str, DeliveryAction] = {}


def on_fact(fact_type: type) -> Callable[[FactHandler], FactHandler]:
    def decorate(handler: FactHandler) -> FactHandler:
        _fact_handlers[fact_type] = handler
        return handler

    return decorate


def fact_handler(fact: Any) -> FactHandler:
    try:
        return _fact_handlers[type(fact)]
    except KeyError:
        raise LookupError(f"no workflow handles {type(fact).__name__}") from None


def on_resolve(fact_type: type) -> Callable[[FactResolver], FactResolver]:
    def decorate(resolver: FactResolver) -> FactResolver:
        _fact_resolvers[fact_type] = resolver
        return resolver

    return decorate


def facts_resolve(facts: list) -> list:
    """Each fact, or what its resolver says it stands for (facts without one pass)."""
    resolved: list = []
    for fact in facts:
        resolver = _fact_resolvers.get(type(fact))
        resolved.extend(resolver(fact) if resolver else [fact])
    return resolved


def register_action(action: DeliveryAction) -> DeliveryAction:
    _actions[action.name] = action
    return action


def delivery_action(name: str) -> DeliveryAction:
    try:
        return _actions[name]
    except KeyError:
        raise LookupError(f"no delivery action {name!r} is registered") from None
