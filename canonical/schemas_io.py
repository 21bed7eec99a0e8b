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


def schemas_publish() -> list[Path]:
    SCHEMA_DIR.mkdir(exist_ok=True)
    written = []
    for contract in CONTRACTS:
        path = schema_path(contract)
        path.write_text(schema_text(contract))
        written.append(path)
    return written
