"""Tryton's side of invoice adjustments: credit notes, refunds, write-offs.

Mixed into ``TrytonConnector`` (it uses the connector's company, invoice and wizard
helpers). Each operation finds its own effect first, by a reference Tryton keeps:

* a credit note is an ``account.invoice`` (type out, negative quantities) whose
  ``reference`` is the billing credit note's id; its lines' ``origin`` is the
  credited invoice line when the credit names one;
* a refund is an ``account.move`` whose ``description`` is
  ``"<system> refund <id>"`` (``"<system> lost dispute <id>"`` for a lost dispute);
* a write-off is the invoice reaching ``paid`` through a write-off reconciliation.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from canonical.contracts import CreditNoteLineV1, CreditNoteV1, InvoiceLineV1, InvoiceV1, RefundV1
from canonical.money import to_major
from connectors.base import ExternalDocument
from connectors.errors import NeedsConfiguration, Permanent, Retryable
from connectors.tryton import mapping

INVOICE, MOVE, MOVE_LINE = "account.invoice", "account.move", "account.move.line"


def refund_description(refund: RefundV1) -> str:
    what = "lost dispute" if refund.kind == "dispute_lost" else "refund"
    return f"{refund.source.system} {what} {refund.source.external_id}"


def _as_invoice_line(line: CreditNoteLineV1) -> InvoiceLineV1:
    # The credited amount splits into quantity x unit price exactly as an invoice line does.
    return InvoiceLineV1(description=line.description, quantity=line.quantity or Decimal(1), amount=line.amount,
                         tax_amount=line.tax_amount, tax_rate=line.tax_rate)


class TrytonAdjustments:
    """InvoiceAdjuster for TrytonConnector (see the module docstring)."""

    # -- credit notes ----------------------------------------------------------

    def find_credit_note(self, credit_note: CreditNoteV1, *, legal_entity: str) -> ExternalDocument | None:
        found = self._find_invoice(self._company(legal_entity), credit_note.source.external_id)
        if found is None or found["state"] in ("draft", "validated"):
            return None
        return mapping.external_document(found)

    def post_credit_note(
        self, credit_note: CreditNoteV1, invoice: InvoiceV1, *, legal_entity: str, idempotency_key: str
    ) -> ExternalDocument:
        """Create and post the ERP credit note (lines credited from the invoice's own
        lines keep their account and taxes and point at them as ``origin``; a credit
        by amount takes the default revenue account and the tax that reproduces it),
        check its total against billing's to the minor unit, then settle what can be:
        a credit wholly taken off the invoice (``pre_payment_amount``) goes onto the
        invoice as a payment line, and refunds already booked for it are matched."""
        company = self._company(legal_entity)
        original = self._posted_original(company, invoice)
        found = self._find_invoice(company, credit_note.source.external_id)
        if found is None:
            found = self._read_invoice(company, self._credit_note_create(company, credit_note, invoice, original))
        if found["state"] in ("draft", "validated"):
            self._check_credit_total(company, found, credit_note)
            self._post(company, found["id"])
        note = self._read_invoice(company, found["id"], ["id", "number", "state", "party", "amount_to_pay",
                                                         "lines_to_pay", "payment_lines"])
        if note["state"] == "posted":
            self._credit_note_settle(company, note, original, credit_note)
        document = mapping.external_document(self._read_invoice(company, found["id"]))
        return ExternalDocument(document.external_id, document.number, document.state,
                                {**document.related, "invoice": str(original["id"])})

    def void_credit_note(self, credit_note: CreditNoteV1, *, legal_entity: str, idempotency_key: str) -> ExternalDocument:
        """Take the credit back: cancel a draft; for a posted one, first lift it off
        the invoice it was applied to (while that invoice is unpaid), then credit it
        with refund (Tryton cancels and reconciles it). A credit note already paid
        out (refunded) is refused: the money left, so finance must decide."""
        company = self._company(legal_entity)
        found = self._find_invoice(company, credit_note.source.external_id)
        if found is None:
            return ExternalDocument(external_id="", state="absent")
        if found["state"] in ("draft", "validated"):
            self.client.call(INVOICE, "cancel", [found["id"]], context={"company": company})
        elif found["state"] == "posted":
            note = self._read_invoice(company, found["id"], ["lines_to_pay", "payment_lines"])
            if note["payment_lines"]:
                raise Permanent(f"ERP credit note {found['number']} has payments (refunds) against it; "
                                "voiding it needs a person")
            self._lift_from_invoice(company, note["lines_to_pay"])
            if not self._credit_notes(company, found["id"]):
                self._run_credit_wizard(company, found["id"])
        return mapping.external_document(self._read_invoice(company, found["id"]))

    def _posted_original(self, company: int, invoice: InvoiceV1) -> dict[str, Any]:
        original = self._find_invoice(company, invoice.source.external_id)
        if original is None or original["state"] in ("draft", "validated"):
            raise Retryable(f"invoice {invoice.source.external_id} is not posted in the ERP yet")
        if original["state"] == "cancelled":
            raise Permanent(f"ERP invoice {original['number']} is cancelled; there is nothing left to credit")
        return original

    def _credit_note_create(self, company: int, note: CreditNoteV1, invoice: InvoiceV1,
                            original: dict[str, Any]) -> int:
        head, = self.client.call(INVOICE, "read", [original["id"]],
                                 ["party", "invoice_address", "account", "journal", "currency", "number"],
                                 context={"company": company})
        erp_lines = self.client.call("account.invoice.line", "search_read", [("invoice", "=", original["id"])],
                                     0, None, [("id", "ASC")], ["id", "account", "taxes"],
                                     context={"company": company})
        # The hub creates ERP lines in the billing invoice's line order.
        by_source = {line.source_line_id: erp for line, erp in zip(invoice.lines, erp_lines, strict=False)
                     if line.source_line_id}
        revenue_account, _ = self._default_accounts(company)
        taxes = self._taxes(company)
        lines = []
        for index, line in enumerate(note.lines):
            label = line.source_line_id or f"#{index + 1} {line.description}"
            erp = by_source.get(line.invoice_line_ref) if line.invoice_line_ref else None
            if line.invoice_line_ref and erp is None:
                raise Permanent(f"credit note line {label} credits invoice line {line.invoice_line_ref}, "
                                f"which invoice {invoice.source.external_id} does not have")
            price = mapping.line_price(_as_invoice_line(line), note.currency)
            if erp is not None:
                tax_ids = erp["taxes"] if line.tax_amount else []
            else:
                tax_id = mapping.choose_tax(_as_invoice_line(line), taxes, label=label)
                tax_ids = [tax_id] if tax_id is not None else []
            values = {
                "type": "line", "company": company, "currency": head["currency"],
                "description": price.description, "quantity": -float(price.quantity),
                "unit_price": price.unit_price, "account": erp["account"] if erp else revenue_account,
                "taxes": [["add", tax_ids]] if tax_ids else [],
            }
            if erp is not None:
                values["origin"] = f"account.invoice.line,{erp['id']}"
            lines.append(values)
        values = {
            "type": "out", "company": company, "party": head["party"], "invoice_address": head["invoice_address"],
            "currency": head["currency"], "account": head["account"], "journal": head["journal"],
            "invoice_date": note.issued_on, "reference": note.source.external_id,
            "description": f"{note.source.system} credit note {note.number or note.source.external_id} "
                           f"for invoice {head['number']}",
            "lines": [["create", lines]],
        }
        note_id, = self.client.call(INVOICE, "create", [values], context={"company": company})
        return note_id

    def _check_credit_total(self, company: int, record: dict[str, Any], note: CreditNoteV1) -> None:
        expected = -to_major(note.total, note.currency)
        if Decimal(record["total_amount"]) == expected:
            return
        if record["state"] == "draft":
            self.client.call(INVOICE, "delete", [record["id"]], context={"company": company})
        raise Permanent(
            f"ERP credit note total {record['total_amount']} {note.currency} differs from billing's {expected} "
            f"for credit note {note.source.external_id}; the draft was deleted")

    def _credit_note_settle(self, company: int, note: dict[str, Any], original: dict[str, Any],
                            credit_note: CreditNoteV1) -> None:
        open_lines = self._unreconciled(company, note["lines_to_pay"])
        if not open_lines:
            return
        if credit_note.pre_payment_amount == credit_note.total and original["state"] == "posted":
            invoice = self._read_invoice(company, original["id"], ["payment_lines", "lines_to_pay", "amount_to_pay"])
            missing = [line for line in open_lines if line not in invoice["payment_lines"]]
            if missing:
                self.client.call(INVOICE, "write", [original["id"]], {"payment_lines": [["add", missing]]},
                                 context={"company": company})
            self._reconcile_if_settled(company, original["id"])
            return
        refund_lines = self._refund_lines(company, credit_note)
        if refund_lines:
            self.client.call(INVOICE, "write", [note["id"]], {"payment_lines": [["add", refund_lines]]},
                             context={"company": company})
            self._reconcile_if_settled(company, note["id"])

    def _reconcile_if_settled(self, company: int, invoice_id: int) -> None:
        """Once an invoice's payment lines cover it, reconcile them with it (Tryton
        then marks it, and any credit note whose line settled it, paid)."""
        record = self._read_invoice(company, invoice_id, ["amount_to_pay", "lines_to_pay", "payment_lines"])
        if record["amount_to_pay"] == 0:
            self._reconcile(company, self._unreconciled(company, record["lines_to_pay"] + record["payment_lines"]))

    def _refund_lines(self, company: int, credit_note: CreditNoteV1) -> list[int]:
        """Open receivable lines of refunds the credit note names, booked before it."""
        if not credit_note.refunds:
            return []
        descriptions = [f"{ref.system} refund {ref.external_id}" for ref in credit_note.refunds]
        return self.client.call(
            MOVE_LINE, "search",
            [("move.description", "in", descriptions), ("debit", ">", 0), ("reconciliation", "=", None),
             ("account.type.receivable", "=", True)],
            0, None, None, context={"company": company})

    def _lift_from_invoice(self, company: int, lines: list[int]) -> None:
        invoices = self.client.call(INVOICE, "search", [("payment_lines", "in", lines)], 0, None, None,
                                    context={"company": company})
        for invoice_id in invoices:
            record = self._read_invoice(company, invoice_id, ["state", "number"])
            if record["state"] == "paid":
                raise Permanent(f"the credit note settled ERP invoice {record['number']}, now paid; "
                                "voiding it needs a person")
            self.client.call(INVOICE, "write", [invoice_id], {"payment_lines": [["remove", lines]]},
                             context={"company": company})

    # -- refunds ---------------------------------------------------------------

    def find_refund(self, refund: RefundV1, *, legal_entity: str) -> ExternalDocument | None:
        company = self._company(legal_entity)
        moves = self.client.call(MOVE, "search_read", [("description", "=", refund_description(refund))], 0, 1,
                                 [("id", "ASC")], ["id", "number", "state"], context={"company": company})
        if not moves:
            return None
        return ExternalDocument(external_id=str(moves[0]["id"]), number=moves[0]["number"] or None,
                                state=moves[0]["state"])

    def record_refund(
        self, refund: RefundV1, invoice: InvoiceV1, *, credit_note: CreditNoteV1 | None, legal_entity: str,
        idempotency_key: str,
    ) -> ExternalDocument:
        """Pay the money out from the payment method's journal. Against the ERP credit
        note when one pays it (Tryton's pay wizard on the credit note, which settles
        it), else as the payment's reversal: the receivable is debited again for the
        customer, so the ERP shows the refunded amount as owed until a credit note or
        a write-off settles it (see docs/invoice-adjustments.md)."""
        found = self.find_refund(refund, legal_entity=legal_entity)
        if found is not None:
            return found
        company = self._company(legal_entity)
        original = self._posted_original(company, invoice)
        amount = to_major(refund.amount, refund.currency)
        date = refund.refunded_at.astimezone(dt.UTC).date()
        if credit_note is not None:
            note = self._find_invoice(company, credit_note.source.external_id)
            if note is None or note["state"] in ("draft", "validated"):
                raise Retryable(f"credit note {credit_note.source.external_id} is not posted in the ERP yet")
            due = self._read_invoice(company, note["id"], ["amount_to_pay"])["amount_to_pay"]
            if -due < amount:
                raise Permanent(f"refund {refund.source.external_id} of {amount} {refund.currency} exceeds the "
                                f"{-due} ERP credit note {note['number']} still owes the customer")
            self._run_pay_wizard(company, note["id"], -amount, date, refund_description(refund))
        else:
            self._refund_move(company, original, amount, date, refund_description(refund))
        document = self.find_refund(refund, legal_entity=legal_entity)
        if document is None:
            raise Retryable(f"the ERP move for refund {refund.source.external_id} was not found after booking it")
        return document

    def _refund_move(self, company: int, original: dict[str, Any], amount: Decimal, date: dt.date,
                     description: str) -> None:
        head, = self.client.call(INVOICE, "read", [original["id"]], ["party", "account"],
                                 context={"company": company})
        method, = self.client.call("account.invoice.payment.method", "read", [self._payment_method(company)],
                                   ["journal", "credit_account"], context={"company": company})
        periods = self.client.call(
            "account.period", "search",
            [("company", "=", company), ("start_date", "<=", date), ("end_date", ">=", date),
             ("type", "=", "standard"), ("state", "=", "open")], 0, 1, None, context={"company": company})
        if not periods:
            raise Permanent(f"no open ERP period covers the refund date {date} for company {company}")
        move_id, = self.client.call(MOVE, "create", [{
            "company": company, "journal": method["journal"], "period": periods[0], "date": date,
            "description": description, "origin": f"account.invoice,{original['id']}",
            "lines": [["create", [
                {"account": head["account"], "party": head["party"], "debit": amount, "credit": Decimal(0),
                 "description": description},
                {"account": method["credit_account"], "debit": Decimal(0), "credit": amount,
                 "description": description},
            ]]],
        }], context={"company": company})
        self.client.call(MOVE, "post", [move_id], context={"company": company})

    # -- write-offs ------------------------------------------------------------

    def write_off_invoice(
        self, invoice: InvoiceV1, *, account: str, legal_entity: str, idempotency_key: str
    ) -> ExternalDocument:
        """Write the rest off through Tryton's pay wizard (amount 0, type write-off)
        with the company's write-off method for ``account``: the invoice's open lines
        are reconciled against a write-off move to that account, and it is ``paid``."""
        company = self._company(legal_entity)
        original = self._posted_original(company, invoice)
        if original["state"] == "paid":
            return mapping.external_document(original)
        methods = self.client.call(
            "account.move.reconcile.write_off", "search",
            [("company", "=", company), ["OR", ("credit_account.code", "=", account),
                                         ("debit_account.code", "=", account)]],
            0, 1, [("id", "ASC")], context={"company": company})
        if not methods:
            raise NeedsConfiguration(f"Tryton company {company} has no write-off method for account {account}")
        description = f"{invoice.source.system} write-off {invoice.source.external_id}"
        self._run_pay_wizard(company, original["id"], Decimal(0), dt.date.today(), description,
                             ask={"type": "writeoff", "writeoff": methods[0]})
        return mapping.external_document(self._read_invoice(company, original["id"]))

    # -- move lines --------------------------------------------------------------

    def _unreconciled(self, company: int, line_ids: list[int]) -> list[int]:
        if not line_ids:
            return []
        return self.client.call(MOVE_LINE, "search", [("id", "in", line_ids), ("reconciliation", "=", None)],
                                0, None, [("id", "ASC")], context={"company": company})

    def _reconcile(self, company: int, line_ids: list[int]) -> None:
        """Reconcile lines that balance, through Tryton's reconcile-lines wizard."""
        if not line_ids:
            return
        name = "account.move.reconcile_lines"
        ctx = {"company": company, "active_model": MOVE_LINE, "active_id": line_ids[0], "active_ids": line_ids}
        session, _, _ = self.client.wizard(name, "create", context=ctx)
        try:
            self.client.wizard(name, "execute", session, {}, "start", context=ctx)
        finally:
            self.client.wizard(name, "delete", session, context=ctx)
