import json

import pytest
from pydantic import ValidationError

from canonical.contracts import CONTRACTS, InvoiceV1
from canonical.schemas_io import schema_path, schema_text


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.schema_id())
def test_the_published_schema_matches_the_contract_class(contract):
    assert schema_path(contract).read_text() == schema_text(contract), (
        "run `manage.py contracts_publish` and commit the schema"
    )


def _invoice(**changes):
    document = {
        "source": {"system": "stripe", "external_id": "in_1"},
        "customer": {"source": {"system": "stripe", "external_id": "cus_1"}, "display_name": "Ada"},
        "currency": "jpy",
        "status": "open",
        "issued_on": "2026-11-27",
        "subtotal": 1000,
        "tax": 100,
        "total": 1100,
        "lines": [{"description": "Plan", "quantity": "1", "amount": 1000, "tax_amount": 100}],
    }
    document.update(changes)
    return document


def test_an_invoice_validates_and_normalizes_its_currency():
    invoice = InvoiceV1.model_validate(_invoice())
    assert invoice.currency == "JPY" and invoice.total == 1100
    assert InvoiceV1.model_validate_json(invoice.model_dump_json()) == invoice


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"total": 1101}, "!= total"),
        ({"subtotal": 900, "total": 1000}, "line amounts"),
        ({"tax": 0, "total": 1000}, "line taxes"),
        ({"currency": "ZZZ"}, "unknown currency"),
        ({"lines": []}, "at least 1"),
        ({"unexpected": 1}, "Extra inputs"),
    ],
)
def test_an_inconsistent_invoice_is_rejected(changes, message):
    with pytest.raises(ValidationError, match=message):
        InvoiceV1.model_validate(_invoice(**changes))


def test_the_schema_is_versioned_and_names_money_in_minor_units():
    schema = json.loads(schema_text(InvoiceV1))
    assert schema["$id"].endswith("invoice.v1")
    assert "minor units" in schema["properties"]["total"]["description"]
