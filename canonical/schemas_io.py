"""Published JSON Schemas of the canonical contracts, generated from the typed classes."""

from __future__ import annotations

import json
from pathlib import Path

from canonical.contracts import CONTRACTS, Contract

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


def schema_document(contract: type[Contract]) -> dict:
    schema = contract.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:integration-hub:contract:{contract.schema_id()}",
        **schema,
    }


def schema_text(contract: type[Contract]) -> str:
    return json.dumps(schema_document(contract), indent=2, sort_keys=True) + "\n"


def schema_path(contract: type[Contract]) -> Path:
    return SCHEMA_DIR / f"{contract.schema_id()}.json"


class BreakingChange(Exception):
    """Publishing would overwrite a published version with a schema that breaks it."""


def schemas_publish(contracts=CONTRACTS, schema_dir: Path = SCHEMA_DIR) -> list[Path]:
    """Write each contract's schema. A published version is only ever overwritten
    compatibly: a breaking change needs a new version number (``canonical.compat``)."""
    from canonical.compat import breaking_changes

    schema_dir.mkdir(exist_ok=True)
    refused = []
    for contract in contracts:
        path = schema_dir / schema_path(contract).name
        if path.exists():
            problems = breaking_changes(json.loads(path.read_text()), json.loads(schema_text(contract)))
            refused += [f"{contract.schema_id()}: {problem}" for problem in problems]
    if refused:
        raise BreakingChange("; ".join(refused) + " — raise the contract's version instead of overwriting it")
    written = []
    for contract in contracts:
        path = schema_dir / schema_path(contract).name
        path.write_text(schema_text(contract))
        written.append(path)
    return written
