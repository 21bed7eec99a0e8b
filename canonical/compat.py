"""Compatibility of the canonical contracts with their published JSON Schemas.

A published schema (``canonical/schemas/<name>.v<N>.json``) is a promise to every
consumer of that contract version. The code may grow it compatibly (a new optional
field, a wider bound, a better description), but a breaking change needs a new
version number, published beside the old one:

* a field removed, or retyped (its JSON type, enum values taken away, what it
  refers to), at any depth (``lines[].amount``);
* a new required field (or an optional one made required);
* a version lower than one already published, or a version of the code that was
  never published.

Pure functions over schema documents; ``manage.py contracts_check`` runs them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from canonical.contracts import CONTRACTS, Contract
from canonical.schemas_io import SCHEMA_DIR, schema_document

_FILE = re.compile(r"^(?P<name>[a-z_]+)\.v(?P<version>\d+)\.json$")


def published_schemas(schema_dir: Path = SCHEMA_DIR) -> dict[tuple[str, int], dict]:
    """(name, version) → the published schema document."""
    found = {}
    for path in sorted(schema_dir.glob("*.json")):
        match = _FILE.match(path.name)
        if match:
            found[(match["name"], int(match["version"]))] = json.loads(path.read_text())
    return found


def breaking_changes(published: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What ``current`` breaks of ``published`` (both schema documents), one line each."""
    problems: list[str] = []
    _compare(published, current, published.get("$defs", {}), current.get("$defs", {}), "", problems, set())
    return problems


def _compare(old: Mapping, new: Mapping, old_defs: Mapping, new_defs: Mapping, path: str,
             problems: list[str], seen: set[str]) -> None:
    old, new = _resolve(old, old_defs), _resolve(new, new_defs)
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for field, old_field in old_props.items():
        where = f"{path}{field}"
        if field not in new_props:
            problems.append(f"field {where} removed")
            continue
        new_field = new_props[field]
        old_shape, new_shape = _shape(old_field, old_defs), _shape(new_field, new_defs)
        if old_shape != new_shape:
            problems.append(f"field {where} retyped: {_show(old_shape)} -> {_show(new_shape)}")
            continue
        lost = _enum_values(old_field, old_defs) - _enum_values(new_field, new_defs)
        if lost:
            problems.append(f"field {where} no longer allows {sorted(lost, key=str)}")
        for old_child, new_child, suffix in _nested(old_field, new_field, old_defs, new_defs):
            key = f"{where}{suffix}"
            if key not in seen:
                seen.add(key)
                _compare(old_child, new_child, old_defs, new_defs, f"{key}.", problems, seen)
    for field in sorted(set(new.get("required", ())) - set(old.get("required", ()))):
        problems.append(f"field {path}{field} is newly required")


def _resolve(schema: Mapping, defs: Mapping) -> Mapping:
    ref = schema.get("$ref")
    return defs.get(ref.rsplit("/", 1)[-1], {}) if ref else schema


def _variants(schema: Mapping) -> list[Mapping]:
    return list(schema.get("anyOf") or schema.get("oneOf") or [schema])


def _shape(schema: Mapping, defs: Mapping) -> Any:
    """The type of a property without its constraints or words: JSON types and
    formats, array item shapes, objects (whose fields are compared one by one, so a
    renamed definition is no change). Enum values are compared apart."""
    shapes = set()
    for variant in _variants(schema):
        if "$ref" in variant:
            shapes.add(("object", None))
        elif variant.get("type") == "array":
            shapes.add(("array", _shape(variant.get("items", {}), defs)))
        else:
            kind = variant.get("type")
            shapes.add(tuple(kind) if isinstance(kind, list) else (kind, variant.get("format")))
    return frozenset(shapes)


def _show(shape: frozenset) -> str:
    def one(part: tuple) -> str:
        if part[0] == "array":
            return f"array of {_show(part[1])}"
        return part[0] if part[1] is None else f"{part[0]} ({part[1]})"

    return " | ".join(sorted(one(part) for part in shape))


def _enum_values(schema: Mapping, defs: Mapping) -> set:
    values = set()
    for variant in _variants(_resolve(schema, defs)):
        values |= {json.dumps(v) for v in variant.get("enum", ())}
        if "const" in variant:
            values.add(json.dumps(variant["const"]))
    return values


def _nested(old: Mapping, new: Mapping, old_defs: Mapping, new_defs: Mapping):
    """Pairs of nested object schemas to compare: a referenced object, or the object
    items of an array (``[]``)."""
    def objects(schema: Mapping, defs: Mapping) -> dict[str, Mapping]:
        found = {}
        for variant in _variants(schema):
            if "$ref" in variant:
                found[""] = variant
            elif variant.get("type") == "array":
                for item in _variants(variant.get("items", {})):
                    if "$ref" in item:
                        found["[]"] = item
        return found

    old_objects, new_objects = objects(old, old_defs), objects(new, new_defs)
    for suffix in old_objects.keys() & new_objects.keys():
        yield old_objects[suffix], new_objects[suffix], suffix


def contracts_check(contracts: Iterable[type[Contract]] = CONTRACTS,
                    schema_dir: Path = SCHEMA_DIR) -> tuple[list[str], list[str]]:
    """(failures, notes). A failure is a breaking change without a new version, a
    lowered version or an unpublished one; a note is a compatible change not yet
    published (``make schemas``)."""
    published = published_schemas(schema_dir)
    failures, notes = [], []
    by_name: dict[str, list[type[Contract]]] = {}
    for contract in contracts:
        by_name.setdefault(contract.name, []).append(contract)
    for name, versions in sorted(by_name.items()):
        newest_published = max((v for n, v in published if n == name), default=None)
        newest_code = max(c.version for c in versions)
        if newest_published is not None and newest_code < newest_published:
            failures.append(f"{name}: version lowered to v{newest_code}; v{newest_published} is published")
        for contract in versions:
            schema = published.get((name, contract.version))
            if schema is None:
                failures.append(f"{contract.schema_id()}: not published; run `make schemas` and commit "
                                f"canonical/schemas/{contract.schema_id()}.json")
                continue
            current = json.loads(json.dumps(schema_document(contract)))
            broken = breaking_changes(schema, current)
            for problem in broken:
                failures.append(f"{contract.schema_id()}: {problem}; a breaking change needs a new version "
                                f"(v{contract.version + 1}), published beside v{contract.version}")
            if not broken and current != schema:
                notes.append(f"{contract.schema_id()}: compatible changes not yet published; run `make schemas`")
    known = {c.name for c in contracts}
    for name in sorted({n for n, _ in published} - known):
        failures.append(f"{name}: published, but the code has no {name} contract any more")
    return failures, notes
