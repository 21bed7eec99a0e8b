"""End-to-end fixtures around a real Tryton server.

``tryton_server`` (session): builds the template DB once (cached under
``var/tryton``, rebuilt when setup_db.py, trytond or the month change) and serves a
fresh copy of it for the whole session. Tests share it, so each test uses unique
references (uuid). ``erp`` reads what ended up in the ERP, independent of the
connector under test.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TRYTON_CACHE_DIR = PROJECT_ROOT / "var" / "tryton"


def _progress(message: str) -> None:
    # The first build takes a minute; show it even under pytest's capture.
    print(message, file=sys.__stderr__, flush=True)


@pytest.fixture(scope="session")
def tryton_server():
    """A running TrytonServer (``.url``, ``.database``, ``.info``,
    ``.connection_config()``, ``.credentials()``). Fails, never skips, when Tryton
    is missing: the e2e suite is part of the contract."""
    try:
        import trytond  # noqa: F401

        from connectors.tryton.server import TrytonNotInstalled, TrytonServer, TrytonServerError
    except ImportError as exc:
        pytest.fail(f"Tryton is not installed ({exc}); run: pip install -e '.[erp]'", pytrace=False)
    try:
        server = TrytonServer.from_cache(TRYTON_CACHE_DIR, progress=_progress).start()
    except (TrytonNotInstalled, TrytonServerError) as exc:
        pytest.fail(f"could not start the Tryton test server: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


class ErpReader:
    """Reads ERP state over JSON-RPC as the hub user (who sees every company)."""

    INVOICE_FIELDS = ["id", "number", "state", "type", "reference", "total_amount", "tax_amount",
                      "untaxed_amount", "currency.code", "company", "party", "invoice_date"]

    def __init__(self, server: Any):
        from connectors.tryton.client import TrytonClient

        credentials = server.credentials()
        self.client = TrytonClient(server.url, server.database, credentials["login"], credentials["password"])

    def invoices(self, reference: str | None = None, **filters: Any) -> list[dict[str, Any]]:
        """Invoices (customer and credit notes) matching ``reference`` and ``field=value``
        filters, oldest first, as dicts with ``currency`` as the ISO code and
        ``total_amount``/``tax_amount`` as Decimal."""
        domain = [(field, "=", value) for field, value in filters.items()]
        if reference is not None:
            domain.append(("reference", "=", reference))
        records = self.client.call("account.invoice", "search_read", domain, 0, None, [("id", "ASC")],
                                   self.INVOICE_FIELDS)
        return [self._invoice(record) for record in records]

    def credit_notes(self, invoice_id: int) -> list[dict[str, Any]]:
        """Invoices whose lines were credited from ``invoice_id``'s lines."""
        lines = self.client.call("account.invoice.line", "search", [("invoice", "=", invoice_id)], 0, None, None)
        origins = [f"account.invoice.line,{line}" for line in lines]
        records = self.client.call("account.invoice", "search_read", [("lines.origin", "in", origins)], 0,
                                   None, [("id", "ASC")], self.INVOICE_FIELDS)
        return [self._invoice(record) for record in records]

    def party(self, code: str) -> dict[str, Any] | None:
        records = self.client.call("party.party", "search_read", [("code", "=", code)], 0, None, None,
                                   ["id", "name", "code", "addresses"])
        return records[0] if records else None

    @staticmethod
    def _invoice(record: dict[str, Any]) -> dict[str, Any]:
        record = dict(record)
        record["currency"] = (record.pop("currency.", None) or {}).get("code")
        for field in ("total_amount", "tax_amount", "untaxed_amount"):
            record[field] = Decimal(record[field])
        return record

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="session")
def erp(tryton_server):
    """An ErpReader on the session's Tryton server."""
    reader = ErpReader(tryton_server)
    yield reader
    reader.close()
