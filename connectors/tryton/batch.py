"""Posting customer invoices to Tryton in batches: one ``create`` and one ``post`` call
for many invoices, where ``post_invoice`` makes both per invoice.

Tryton runs each RPC call in one database transaction, and ``post`` of k invoices
shares its lock retries among them, so a batch of 25 costs the server a fraction of
25 single posts (see docs/scaling.md). The guarantees are ``post_invoice``'s: every
invoice is first looked up by ``reference`` (so a batch cut short is safe to repeat),
everything that can fail on mapping is checked before anything is created, and each
invoice gets its own answer. Where the server refuses a batch call as a whole (one
invoice's validation fails the transaction), the batch falls back to posting each
invoice alone, so only that invoice fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from canonical.contracts import InvoiceV1
from connectors.base import Batching, ExternalDocument, InvoiceToPost
from connectors.errors import ConnectorError, Permanent
from connectors.tryton import mapping

INVOICE = "account.invoice"
PARTY_CODE_TAKEN = "code on party must be unique"

Answer = ExternalDocument | ConnectorError


class TrytonInvoiceBatch:
    """``post_invoices`` for TrytonConnector (mixed in; uses its lookups and caches)."""

    @property
    def invoice_batching(self) -> Batching:
        """Up to ``batch_size`` invoices (config, default 100), in about a dozen calls
        whatever their number: find, parties (search, create, addresses), create, read,
        post, and four reads of the booked amounts. A batch is kept within the read
        timeout (its ``post`` is one call), and a worker starts at 25: a post of 25 takes
        the server some 10 s, of 100 some 30 s on a 2-core host."""
        size = max(int(self.config.get("batch_size") or 100), 1)
        return Batching(size=size, calls=12, seconds=self.client.read_timeout, first=min(size, 25))

    def post_invoices(self, items: Sequence[InvoiceToPost]) -> list[Answer]:
        """Each item's answer, in order: the document ``post_invoice`` would return, or
        the error it would raise. Raises only what leaves every item's outcome alike:
        the server unreachable, a timeout (outcome unknown), a lost session."""
        answers: list[Answer | None] = [None] * len(items)
        by_company: dict[int, list[int]] = {}
        for index, item in enumerate(items):
            try:
                by_company.setdefault(self._company(item.legal_entity), []).append(index)
            except ConnectorError as exc:
                answers[index] = exc
        for company, indexes in by_company.items():
            for index, answer in zip(indexes, self._post_batch(company, [items[i] for i in indexes]), strict=True):
                answers[index] = answer
        return answers  # type: ignore[return-value]  # every slot is filled above

    def _post_batch(self, company: int, items: Sequence[InvoiceToPost]) -> list[Answer]:
        answers: dict[int, Answer] = {}
        found = self._find_invoices(company, [item.invoice.source.external_id for item in items])
        to_post: dict[int, int] = {}  # item index -> ERP invoice id
        drafts: dict[int, Callable[..., dict[str, Any]]] = {}
        for index, item in enumerate(items):
            record = found.get(item.invoice.source.external_id)
            try:
                if record is None:
                    drafts[index] = self._draft(company, item.invoice, item.legal_entity, item.posting)
                elif record["state"] in ("draft", "validated"):
                    self._check_total(company, record, item.invoice)
                    to_post[index] = record["id"]
                else:
                    answers[index] = self._with_company_amounts(company, record)
            except Permanent as exc:
                answers[index] = exc
        if drafts:
            try:
                created = self._create(company, {index: items[index].invoice for index in drafts}, drafts)
            except Permanent:
                return self._one_by_one(items, answers)
            for (index, invoice_id), record in zip(created.items(), self._read_invoices(company, list(created.values())),
                                                   strict=True):
                try:
                    self._check_total(company, record, items[index].invoice)
                    to_post[index] = invoice_id
                except Permanent as exc:
                    answers[index] = exc
        if to_post:
            try:
                self._post_ids(company, list(to_post.values()))
            except Permanent:
                return self._one_by_one(items, answers)
            records = self._read_invoices(company, list(to_post.values()))
            answers.update(zip(to_post, self._documents(company, records), strict=True))
        return [answers[index] for index in range(len(items))]

    def _one_by_one(self, items: Sequence[InvoiceToPost], answers: dict[int, Answer]) -> list[Answer]:
        """The server refused a batch call: each invoice without an answer yet goes
        through ``post_invoice``, which finds what the batch left (drafts included)."""
        for index, item in enumerate(items):
            if index not in answers:
                try:
                    answers[index] = self.post_invoice(item.invoice, legal_entity=item.legal_entity,
                                                       idempotency_key=item.idempotency_key, posting=item.posting)
                except Permanent as exc:
                    answers[index] = exc
        return [answers[index] for index in range(len(items))]

    def _create(self, company: int, invoices: dict[int, InvoiceV1],
                drafts: dict[int, Callable[..., dict[str, Any]]]) -> dict[int, int]:
        """Create the drafts in one call, their parties first; item index -> ERP id."""
        parties = self._ensure_parties(list(invoices.values()))
        values = []
        for index, draft in drafts.items():
            party_id, address_id = parties[mapping.party_code(invoices[index].customer)]
            values.append(draft(party_id=party_id, address_id=address_id))
        ids = self.client.call(INVOICE, "create", values, context={"company": company})
        return dict(zip(drafts, ids, strict=True))

    def _ensure_parties(self, invoices: Sequence[InvoiceV1]) -> dict[str, tuple[int, int]]:
        """(party, invoice address) by party code, creating the parties not there yet."""
        customers = {mapping.party_code(invoice.customer): invoice for invoice in invoices}

        def known() -> dict[str, dict[str, Any]]:
            return {record["code"]: record for record in self.client.call(
                "party.party", "search_read", [("code", "in", list(customers))], 0, None, None,
                ["id", "code", "addresses"])}

        parties = known()
        missing = [code for code in customers if code not in parties]
        if missing:
            try:
                self.client.call("party.party", "create",
                                 [mapping.party_values(customers[code].customer) for code in missing])
            except Permanent as exc:
                if PARTY_CODE_TAKEN not in str(exc):
                    raise
                # Created concurrently: one at a time, as the single post does.
                return {code: self._ensure_party(invoice) for code, invoice in customers.items()}
            parties = known()
        bare = [code for code, record in parties.items() if not record["addresses"]]
        if bare:
            ids = self.client.call("party.address", "create", [{"party": parties[code]["id"]} for code in bare])
            for code, address_id in zip(bare, ids, strict=True):
                parties[code]["addresses"] = [address_id]
        return {code: (record["id"], record["addresses"][0]) for code, record in parties.items()}
