"""System-of-record rules as pure functions over plain field dictionaries.

A customer's fields fall into groups (``FIELD_GROUPS``); each group has one owning
role (``SystemOfRecord`` rows, seeded by migration). ``sor_decide`` says, for one
incoming record, which fields to apply and which groups conflict.

Rules, in order, per group:
1. Values the source leaves empty are ignored: sources often lack a field (a
   Salesforce Account has no e-mail), and silence must never erase.
2. Nothing differs from the canonical values: nothing to do.
3. The source's role owns the group: apply.
4. The canonical group is still empty: fill it (first sighting; nobody to overrule).
5. Otherwise: a conflict for the owner; nothing of the group is applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FIELD_GROUPS: dict[str, tuple[str, ...]] = {
    "name": ("display_name", "domain"),
    "contact": ("email",),
    "hierarchy": ("parent_ref",),
    "addresses": ("address", "country"),
    "currency": ("currency",),
    "tax_registration": ("tax_ids",),
    "credit_terms": ("credit_terms",),
}

# The owners the data migration seeds; a group without a ``SystemOfRecord`` row
# (e.g. deleted in the admin, or a database flushed by tests) falls back to these.
DEFAULT_OWNERS: dict[str, str] = {
    "name": "crm", "contact": "crm", "hierarchy": "crm", "addresses": "crm", "currency": "crm",
    "tax_registration": "erp", "credit_terms": "erp",
}


def _empty(value: Any) -> bool:
    return value in (None, "", [], {}, ())


@dataclass(frozen=True)
class Conflict:
    field_group: str
    owner_role: str
    proposed: dict[str, Any]
    current: dict[str, Any]


@dataclass(frozen=True)
class Decision:
    changes: dict[str, Any] = field(default_factory=dict)
    conflicts: tuple[Conflict, ...] = ()


def sor_decide(
    *, current: Mapping[str, Any], incoming: Mapping[str, Any], source_role: str, owners: Mapping[str, str]
) -> Decision:
    """``owners`` maps field group → owning role; a group without a rule is owned by
    nobody, so only rule 4 (fill) can change it."""
    changes: dict[str, Any] = {}
    conflicts: list[Conflict] = []
    for group, names in FIELD_GROUPS.items():
        proposed = {name: incoming[name] for name in names if name in incoming and not _empty(incoming[name])}
        differing = {name: value for name, value in proposed.items() if current.get(name) != value}
        if not differing:
            continue
        owner = owners.get(group, "")
        if owner == source_role or all(_empty(current.get(name)) for name in names):
            changes.update(differing)
            continue
        conflicts.append(Conflict(group, owner, dict(proposed), {name: current.get(name) for name in names}))
    return Decision(changes, tuple(conflicts))
