"""Tryton as the hub's ledger: posts customer invoices, records payments, voids.

Every operation first finds the ERP invoice by ``reference`` = the billing
system's invoice id (Tryton has no idempotency keys, and ``reference`` is not
unique), so a retry after an unknown outcome continues where the last attempt
stopped instead of creating a second invoice.

Config: ``url``, ``database``, ``companies`` (legal-entity code -> Tryton company
id), optional ``timeout`` (read seconds, or ``{"connect": s, "read": s}``),
``rate_reference`` (the currency at rate 1; see ``rates.py``) and ``batch_size``
(the largest batch post, default 100; see ``batch.py``).
Credentials: ``login``, ``password``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from functools import partial
from typing import Any

import httpx

from canonical.contracts import CustomerV1, InvoiceV1, PaymentV1, PriceV1, ProductV1
from canonical.money import to_major, to_minor
from connectors.base import Connector, ExternalDocument, PostingInstructions, TargetProduct
from connectors.errors import MappingError, NeedsConfiguration, Permanent, ProductMissing, Retryable
from connectors.registry import register
from connectors.tryton import mapping
from connectors.tryton.adjustments import TrytonAdjustments
from connectors.tryton.batch import INVOICE, PARTY_CODE_TAKEN, TrytonInvoiceBatch
from connectors.tryton.client import TrytonClient, TrytonWarning
from connectors.tryton.products import ProductMaster
from connectors.tryton.rates import TrytonRates

_INVOICE_FIELDS = ["id", "number", "state", "party", "total_amount", "reference", "currency"]
_DEFAULT_TAXES_WARNING = ".invoice_taxes"  # "the invoice does not have the default taxes" of its products


@register("tryton")
class TrytonConnector(TrytonInvoiceBatch, TrytonAdjustments, TrytonRates, Connector):
    """InvoicePoster, InvoiceBatchPoster, InvoiceAdjuster, CustomerSink, ProductSink, ListPriceSink and
    RateSink over Tryton's JSON-RPC (see the module docstring for config; batches: ``batch.py``,
    products: ``products.py``, adjustments: ``adjustments.py``, exchange rates: ``rates.py``)."""

    secret_fields = ("password",)
    url_fields = ("url",)  # self-hosted: any host; an internal one must be allowed by name

    def __init__(
        self,
        *,
        config: Mapping[str, Any],
        credentials: Mapping[str, Any],
        transport: httpx.BaseTransport | None = None,
        name: str = "",
    ):
        super().__init__(config=config, credentials=credentials, transport=transport, name=name)
        missing = [key for key in ("url", "database", "companies") if not self.config.get(key)]
        missing += [key for key in ("login", "password") if not self.credentials.get(key)]
        if missing:
            raise NeedsConfiguration(f"Tryton connection lacks {', '.join(missing)}")
        self._company_cache: dict[tuple[int, str], Any] = {}
        self.products = ProductMaster(self)

    def build_client(self) -> TrytonClient:
        timeout = self.config.get("timeout")
        connect, read = 5.0, 30.0
        if isinstance(timeout, Mapping):
            connect = float(timeout.get("connect", connect))
            read = float(timeout.get("read", read))
        elif timeout is not None:
            read = float(timeout)
        return TrytonClient(
            self.config["url"], self.config["database"],
            self.credentials["login"], self.credentials["password"],
            connect_timeout=connect, read_timeout=read, transport=self.transport,
        )

    def upsert_product(self, product: ProductV1, *, idempotency_key: str) -> ExternalDocument:
        """Found by code = SKU (active or not) before anything is created."""
        return self.products.upsert(product)

    def set_list_price(self, price: PriceV1, *, legal_entity: str, idempotency_key: str) -> ExternalDocument:
        return self.products.set_list_price(price, legal_entity=legal_entity)

    def catalog_snapshot(self, skus: Sequence[str]) -> dict[str, TargetProduct]:
        return self.products.snapshot(skus)

    def find_invoice(self, invoice: InvoiceV1, *, legal_entity: str) -> ExternalDocument | None:
        """By ``reference`` = the billing system's invoice id, in the entity's company."""
        company = self._company(legal_entity)
        found = self._find_invoice(company, invoice.source.external_id)
        if found is None or found["state"] in ("draft", "validated"):
            return None
        return self._with_company_amounts(company, found)

    def post_invoice(self, invoice: InvoiceV1, *, legal_entity: str, idempotency_key: str,
                     posting: PostingInstructions | None = None) -> ExternalDocument:
        """Find by reference, else create (party, lines, taxes), check the total
        against the canonical one, post. Returns id, number and state, and the
        amounts in company currency. An invoice found posted, paid or cancelled
        (voided) is returned as is, never re-created.

        With ``posting`` (the posting policy's decision) each line goes to the
        revenue account, cost center (analytic account) and tax whose codes it
        names, and a tax whose rate does not reproduce billing's tax is refused;
        without it, the company's default revenue account and the tax whose rate
        reproduces billing's. An invoice in another currency than the company's
        needs an ERP exchange rate for its date. A line whose decision names a
        ``product`` (a SKU) posts against the active ERP product of that code;
        ProductMissing (retried) while the ERP has none."""
        company = self._company(legal_entity)
        found = self._find_invoice(company, invoice.source.external_id)
        if found is not None:
            if found["state"] in ("draft", "validated"):
                self._check_total(company, found, invoice)
                return self._post(company, found["id"])
            return self._with_company_amounts(company, found)
        draft = self._draft(company, invoice, legal_entity, posting)
        party_id, address_id = self._ensure_party(invoice)
        invoice_id, = self.client.call(INVOICE, "create", [draft(party_id=party_id, address_id=address_id)],
                                       context={"company": company})
        self._check_total(company, self._read_invoice(company, invoice_id), invoice)
        return self._post(company, invoice_id)

    def _draft(self, company: int, invoice: InvoiceV1, legal_entity: str,
               posting: PostingInstructions | None) -> Callable[..., dict[str, Any]]:
        """Everything that can fail on mapping, checked before anything is created: returns
        the invoice's create values as a function of its party (``party_id``, ``address_id``)."""
        self._check_fiscal_year(company, invoice.issued_on)
        currency_id = self._currency_id(invoice.currency)
        self._check_rate(company, invoice.currency, currency_id, invoice.issued_on)
        revenue_account, receivable_account = self._default_accounts(company)
        if posting is not None and len(posting.lines) != len(invoice.lines):
            raise MappingError(f"the posting decision has {len(posting.lines)} lines, the invoice "
                               f"{len(invoice.lines)}")
        lines = []
        for index, line in enumerate(invoice.lines):
            label = mapping.line_label(line, index)
            if posting is None:
                account, tax_id, analytic = revenue_account, mapping.choose_tax(
                    line, self._taxes(company), label=label), None
            else:
                decided = posting.lines[index]
                account = (self._account(company, decided.revenue_account, legal_entity)
                           if decided.revenue_account else revenue_account)
                tax_id = self._policy_tax(company, decided.tax_code, line, label, legal_entity)
                analytic = self._cost_center(company, decided.cost_center, legal_entity)
            product = self._line_product(decided.product, label) if posting is not None else None
            lines.append(mapping.invoice_line_values(
                line, invoice.currency, company_id=company, currency_id=currency_id,
                account_id=account, tax_id=tax_id, analytic=analytic, product=product,
            ))
        return partial(mapping.invoice_values, invoice, company_id=company, currency_id=currency_id,
                       receivable_account_id=receivable_account, journal_id=self._revenue_journal(company),
                       lines=lines)

    def _line_product(self, sku: str, label: str) -> tuple[int, int] | None:
        """(product, unit) of the active variant whose code is ``sku``."""
        if not sku:
            return None
        found = self.client.call("product.product", "search_read", [("code", "=", sku)], 0, 1, [("id", "ASC")],
                                 ["id", "default_uom"])
        if not found:
            raise ProductMissing(f"line {label!r} bills catalog SKU {sku}, which the ERP has no active product "
                                 "for yet", sku=sku)
        return found[0]["id"], found[0]["default_uom"]

    def _account(self, company: int, code: str, legal_entity: str) -> int:
        ids = self._cached(company, f"account:{code}", lambda: self.client.call(
            "account.account", "search", [("company", "=", company), ("code", "=", code), ("closed", "!=", True)],
            0, 1, None, context={"company": company}))
        if not ids:
            raise MappingError(f"revenue account {code!r} is not in the ERP company of legal entity {legal_entity}")
        return ids[0]

    def _policy_tax(self, company: int, code: str, line: Any, label: str, legal_entity: str) -> int | None:
        if not code:
            if line.tax_amount:
                raise MappingError(f"the posting policy posts line {label!r} without tax, but billing charged "
                                   f"{line.tax_amount} (minor units) of tax on it")
            return None
        records = self._cached(company, f"tax:{code}", lambda: self.client.call(
            "account.tax", "search_read", [("company", "=", company), ("name", "=", code), ("parent", "=", None)],
            0, 1, None, ["id", "rate", "type"], context={"company": company}))
        if not records:
            raise MappingError(f"tax code {code!r} is not in the ERP company of legal entity {legal_entity}: "
                               "add the tax there or change the posting policy's tax mapping, then replay")
        return mapping.policy_tax(line, records[0]["id"], Decimal(records[0]["rate"] or 0), code=code, label=label)

    def _cost_center(self, company: int, code: str, legal_entity: str) -> tuple[int, int] | None:
        if not code:
            return None
        records = self._cached(company, f"analytic:{code}", lambda: self.client.call(
            "analytic_account.account", "search_read",
            [("company", "=", company), ("code", "=", code), ("type", "=", "normal")], 0, 1, None,
            ["id", "root"], context={"company": company}))
        if not records:
            raise MappingError(f"cost center {code!r} is not an analytic account of the ERP company of "
                               f"legal entity {legal_entity}")
        return records[0]["root"], records[0]["id"]

    def _company_currency(self, company: int) -> tuple[int, str]:
        def load() -> tuple[int, str]:
            record, = self.client.call("company.company", "read", [company], ["currency"],
                                       context={"company": company})
            return record["currency"], self._currency_code(record["currency"])

        return self._cached(company, "company-currency", load)

    def _check_rate(self, company: int, code: str, currency_id: int, date: dt.date) -> None:
        """Tryton converts a foreign-currency invoice at the latest rate on or before
        its date, and fails the post without one; say so before creating anything."""
        company_currency, company_code = self._company_currency(company)
        for wanted_id, wanted_code in {(currency_id, code), (company_currency, company_code)}:
            if wanted_id == company_currency and code == company_code:
                continue
            if not self.client.call("currency.currency.rate", "search",
                                    [("currency", "=", wanted_id), ("date", "<=", date)], 0, 1, None):
                raise MappingError(f"the ERP has no {wanted_code} exchange rate on or before {date}; load the "
                                   "rate (the rate source), then replay")

    def _with_company_amounts(self, company: int, record: Mapping[str, Any]) -> ExternalDocument:
        """The document, with its total and tax in company currency (minor units) as
        the ERP booked them: the receivable line and the tax lines of its move."""
        document, = self._documents(company, [record])
        return document

    def _documents(self, company: int, records: Sequence[Mapping[str, Any]]) -> list[ExternalDocument]:
        """``_with_company_amounts`` of several invoices of one company, in three calls."""
        context = {"company": company}
        invoices = self._read_invoices(company, [int(record["id"]) for record in records], ["move", "account", "taxes"])
        moves = [invoice["move"] for invoice in invoices if invoice["move"]]
        move_lines = self.client.call("account.move.line", "search_read", [("move", "in", moves)], 0, None, None,
                                      ["move", "account", "debit", "credit"], context=context) if moves else []
        taxes = [tax for invoice in invoices for tax in invoice["taxes"]]
        tax_accounts = {tax["id"]: tax["account"] for tax in self.client.call(
            "account.invoice.tax", "read", taxes, ["account"], context=context)} if taxes else {}
        _, currency = self._company_currency(company)
        documents = []
        for record, invoice in zip(records, invoices, strict=True):
            document = mapping.external_document(record)
            if invoice["move"]:
                lines = [line for line in move_lines if line["move"] == invoice["move"]]
                accounts = {tax_accounts[tax] for tax in invoice["taxes"]}
                total = sum(Decimal(ml["debit"]) - Decimal(ml["credit"]) for ml in lines
                            if ml["account"] == invoice["account"])
                tax = sum(Decimal(ml["credit"]) - Decimal(ml["debit"]) for ml in lines if ml["account"] in accounts)
                document = ExternalDocument(document.external_id, document.number, document.state, {
                    **document.related, "company_currency": currency,
                    "company_total": str(to_minor(total, currency)), "company_tax": str(to_minor(tax, currency)),
                })
            documents.append(document)
        return documents

    def upsert_customer(self, customer: CustomerV1, *, idempotency_key: str,
                        external_id: str | None = None) -> ExternalDocument:
        """Find the party by code ``HUB-<canonical id>`` (unique in Tryton, so a retry
        finds what an earlier attempt created), then create it or bring its name,
        first address and parent identifier up to date. Returns the party id with the
        code as number. Raises Retryable while the parent is not in the ERP yet."""
        if customer.canonical_id is None:
            raise Permanent("a customer without a canonical id cannot be upserted as an ERP party")
        parent_code = self._parent_code(customer)
        code = mapping.party_code(customer)
        party_id = self._party_by_code(code)
        if party_id is None:
            values = mapping.party_values(customer)
            if parent_code:
                values["identifiers"] = [["create", [{"code": parent_code}]]]
            try:
                party_id, = self.client.call("party.party", "create", [values])
            except Permanent as exc:
                if PARTY_CODE_TAKEN not in str(exc) or (party_id := self._party_by_code(code)) is None:
                    raise
            else:
                return ExternalDocument(external_id=str(party_id), number=code, state="created")
        self._party_update(party_id, customer, parent_code)
        return ExternalDocument(external_id=str(party_id), number=code, state="updated")

    def _parent_code(self, customer: CustomerV1) -> str | None:
        if customer.parent is None:
            return None
        if customer.parent_canonical_id is None:
            raise Retryable(f"parent not yet synced: {customer.parent.system} {customer.parent.external_id} "
                            "is not known to the hub yet")
        if self._party_by_code(f"HUB-{customer.parent_canonical_id}") is None:
            raise Retryable(f"parent not yet synced: party HUB-{customer.parent_canonical_id} is not in the ERP yet")
        return mapping.parent_identifier_code(customer.parent_canonical_id)

    def _party_update(self, party_id: int, customer: CustomerV1, parent_code: str | None) -> None:
        record, = self.client.call("party.party", "read", [party_id], ["name", "addresses", "identifiers"])
        if record["name"] != customer.display_name:
            self.client.call("party.party", "write", [party_id], {"name": customer.display_name})
        address = mapping.address_values(customer)
        if address and record["addresses"]:
            self.client.call("party.address", "write", [record["addresses"][0]], address)
        elif address:
            self.client.call("party.address", "create", [{"party": party_id, **address}])
        identifiers = self.client.call("party.identifier", "read", record["identifiers"], ["code"]) \
            if record["identifiers"] else []
        stale = [i["id"] for i in identifiers
                 if i["code"].startswith(mapping.PARENT_IDENTIFIER_PREFIX) and i["code"] != parent_code]
        if stale:
            self.client.call("party.identifier", "delete", stale)
        if parent_code and parent_code not in {i["code"] for i in identifiers}:
            self.client.call("party.identifier", "create", [{"party": party_id, "code": parent_code}])

    def record_payment(self, payment: PaymentV1, *, legal_entity: str, idempotency_key: str) -> ExternalDocument:
        """Pay the posted invoice through Tryton's pay wizard. A payment whose
        source id is already on the invoice's payment lines is not paid again."""
        company = self._company(legal_entity)
        found = self._find_invoice(company, payment.invoice.external_id)
        if found is None:
            raise Retryable(f"invoice {payment.invoice.external_id} is not in the ERP yet")
        if found["state"] == "paid":
            return mapping.external_document(found)
        if found["state"] in ("draft", "validated"):
            raise Retryable(f"invoice {payment.invoice.external_id} is not posted in the ERP yet")
        if found["state"] == "cancelled":
            raise Permanent(f"invoice {payment.invoice.external_id} is cancelled in the ERP; cannot pay it")
        if self._currency_code(found["currency"]) != payment.currency:
            raise Permanent(
                f"payment in {payment.currency} for ERP invoice {found['number']} in "
                f"{self._currency_code(found['currency'])}"
            )
        description = f"{payment.source.system} payment {payment.source.external_id}"
        if self._already_paid(company, found["id"], description):
            return mapping.external_document(self._read_invoice(company, found["id"]))
        amount = to_major(payment.amount, payment.currency)
        amount_to_pay = self._read_invoice(company, found["id"], ["amount_to_pay"])["amount_to_pay"]
        if amount > amount_to_pay:
            raise Permanent(
                f"payment {amount} {payment.currency} exceeds the {amount_to_pay} still due on "
                f"ERP invoice {found['number']}"
            )
        self._run_pay_wizard(company, found["id"], amount, payment.paid_at.astimezone(dt.UTC).date(),
                             description)
        # Two partial payments booked at once each see the other's part as still due,
        # so neither wizard reconciles; whichever finishes last settles the invoice.
        self._reconcile_if_settled(company, found["id"])
        return mapping.external_document(self._read_invoice(company, found["id"]))

    def void_invoice(self, invoice: InvoiceV1, *, legal_entity: str, idempotency_key: str) -> ExternalDocument:
        """Cancel a draft; credit a posted invoice with refund (Tryton then cancels
        the original and reconciles it with the credit note). Returns state
        ``absent`` when the ERP never had the invoice, and the document as is when
        it is already cancelled or credited."""
        company = self._company(legal_entity)
        found = self._find_invoice(company, invoice.source.external_id)
        if found is None:
            return ExternalDocument(external_id="", state="absent")
        ctx = {"company": company}
        if found["state"] in ("draft", "validated"):
            self.client.call(INVOICE, "cancel", [found["id"]], context=ctx)
            return mapping.external_document(self._read_invoice(company, found["id"]))
        if found["state"] == "paid":
            raise Permanent(
                f"ERP invoice {found['number']} is paid; refund it in the ERP rather than voiding it")
        credit_notes = self._credit_notes(company, found["id"])
        if found["state"] == "posted" and not credit_notes:
            voided_on = invoice.voided_at.astimezone(dt.UTC).date() if invoice.voided_at else None
            credit_notes = self._run_credit_wizard(company, found["id"], voided_on)
        document = mapping.external_document(self._read_invoice(company, found["id"]))
        if not credit_notes:
            return document
        related = {**document.related, "credit_note": str(credit_notes[0])}
        return ExternalDocument(document.external_id, document.number, document.state, related)

    def _company(self, legal_entity: str) -> int:
        companies = self.config.get("companies") or {}
        try:
            return int(companies[legal_entity])
        except (KeyError, TypeError, ValueError):
            raise NeedsConfiguration(
                f"no Tryton company configured for legal entity {legal_entity!r} "
                f"(configured: {', '.join(sorted(companies)) or 'none'})"
            ) from None

    def _cached(self, company: int, name: str, load: Any) -> Any:
        key = (company, name)
        if key not in self._company_cache:
            value = load()
            if not value:
                return value  # not there (yet): ask again next time, someone may add it
            self._company_cache[key] = value
        return self._company_cache[key]

    def _find_invoice(self, company: int, reference: str) -> dict[str, Any] | None:
        return self._find_invoices(company, [reference]).get(reference)

    def _find_invoices(self, company: int, references: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The company's customer invoices by reference. Should be one each; if an
        earlier bug made two, the most advanced one wins."""
        records = self.client.call(
            INVOICE, "search_read",
            [("company", "=", company), ("type", "=", "out"), ("reference", "in", list(references))],
            0, None, [("id", "ASC")], _INVOICE_FIELDS, context={"company": company},
        )
        rank = {"paid": 0, "posted": 1, "validated": 2, "draft": 3, "cancelled": 4}
        found: dict[str, dict[str, Any]] = {}
        for record in sorted(records, key=lambda record: (rank.get(record["state"], 5), record["id"])):
            found.setdefault(record["reference"], record)
        return found

    def _read_invoice(self, company: int, invoice_id: int, fields: list[str] | None = None) -> dict[str, Any]:
        record, = self._read_invoices(company, [invoice_id], fields)
        return record

    def _read_invoices(self, company: int, ids: Sequence[int], fields: list[str] | None = None) -> list[dict[str, Any]]:
        """The invoices, in the order of ``ids`` (Tryton's ``read`` answers in its own order)."""
        records = {record["id"]: record for record in self.client.call(
            INVOICE, "read", list(ids), fields or _INVOICE_FIELDS, context={"company": company})}
        return [records[invoice_id] for invoice_id in ids]

    def _check_total(self, company: int, record: Mapping[str, Any], invoice: InvoiceV1) -> None:
        if mapping.totals_match(record["total_amount"], invoice):
            return
        expected = to_major(invoice.total, invoice.currency)
        if record["state"] == "draft":
            self.client.call(INVOICE, "delete", [record["id"]], context={"company": company})
            fate = "the draft was deleted"
        else:
            fate = f"ERP invoice {record['id']} left {record['state']}"
        raise Permanent(
            f"ERP total {record['total_amount']} {invoice.currency} differs from the billing total "
            f"{expected} {invoice.currency} for invoice {invoice.source.external_id}; {fate}"
        )

    def _post(self, company: int, invoice_id: int) -> ExternalDocument:
        try:
            self._post_ids(company, [invoice_id])
        except Permanent:
            record = self._read_invoice(company, invoice_id)
            if record["state"] in ("posted", "paid"):
                return self._with_company_amounts(company, record)  # a concurrent attempt posted it
            if record["state"] == "draft":
                # Leaving it would make the next attempt retry the same failing post.
                self.client.call(INVOICE, "delete", [invoice_id], context={"company": company})
            raise
        return self._with_company_amounts(company, self._read_invoice(company, invoice_id))

    def _post_ids(self, company: int, ids: list[int]) -> None:
        """``post`` the invoices. A line of a catalog product carries the tax the posting
        policy chose, not the product category's default: Tryton warns once per invoice,
        and each warning is confirmed (``skip``), as its client does when a person answers yes."""
        for _ in ids:
            try:
                self.client.call(INVOICE, "post", ids, context={"company": company})
                return
            except TrytonWarning as warning:
                if not warning.name.endswith(_DEFAULT_TAXES_WARNING):
                    raise
                self.client.call("res.user.warning", "skip", warning.name, False)
        self.client.call(INVOICE, "post", ids, context={"company": company})

    def _check_fiscal_year(self, company: int, date: dt.date) -> None:
        years = self._cached(company, "fiscalyears", lambda: self.client.call(
            "account.fiscalyear", "search_read", [("company", "=", company)], 0, None,
            [("start_date", "ASC")], ["start_date", "end_date", "state"], context={"company": company}))
        if any(year["start_date"] <= date <= year["end_date"] for year in years):
            return
        if years and date < years[0]["start_date"]:
            raise Permanent(
                f"invoice date {date} is before the ERP's first fiscal year "
                f"(starts {years[0]['start_date']}) for company {company}")
        raise Permanent(f"no ERP fiscal year covers the invoice date {date} for company {company}")

    def _currency_id(self, code: str) -> int:
        ids = self._cached(0, f"currency:{code}", lambda: self.client.call(
            "currency.currency", "search", [("code", "=", code)], 0, 1, None))
        if not ids:
            raise NeedsConfiguration(f"currency {code} is not set up in Tryton")
        return ids[0]

    def _currency_code(self, currency_id: int) -> str:
        def load() -> str:
            record, = self.client.call("currency.currency", "read", [currency_id], ["code"])
            return record["code"]

        return self._cached(0, f"currency-code:{currency_id}", load)

    def _default_accounts(self, company: int) -> tuple[int, int]:
        """(revenue, receivable) defaults of ``account.configuration`` for the company."""
        def load() -> tuple[int, int]:
            record, = self.client.call(
                "account.configuration", "read", [1],
                ["default_category_account_revenue", "default_account_receivable"],
                context={"company": company})
            return record["default_category_account_revenue"], record["default_account_receivable"]

        revenue, receivable = self._cached(company, "accounts", load)
        if not revenue or not receivable:
            raise NeedsConfiguration(
                f"Tryton company {company} has no default revenue/receivable account "
                "(account configuration)")
        return revenue, receivable

    def _revenue_journal(self, company: int) -> int:
        ids = self._cached(company, "journal", lambda: self.client.call(
            "account.journal", "search", [("type", "=", "revenue")], 0, 1, [("id", "ASC")],
            context={"company": company}))
        if not ids:
            raise NeedsConfiguration("Tryton has no revenue journal")
        return ids[0]

    def _taxes(self, company: int) -> list[tuple[int, Decimal]]:
        records = self._cached(company, "taxes", lambda: self.client.call(
            "account.tax", "search_read",
            [("company", "=", company), ("type", "=", "percentage"), ("parent", "=", None)],
            0, None, [("id", "ASC")], ["id", "rate"], context={"company": company}))
        return [(record["id"], record["rate"]) for record in records]

    def _payment_method(self, company: int) -> int:
        ids = self._cached(company, "payment_method", lambda: self.client.call(
            "account.invoice.payment.method", "search", [("company", "=", company)], 0, 1,
            [("id", "ASC")], context={"company": company}))
        if not ids:
            raise NeedsConfiguration(f"Tryton company {company} has no invoice payment method")
        return ids[0]

    def _ensure_party(self, invoice: InvoiceV1) -> tuple[int, int]:
        """(party id, invoice address id), creating the party if its code is new."""
        code = mapping.party_code(invoice.customer)
        party_id = self._party_by_code(code)
        if party_id is None:
            try:
                party_id, = self.client.call("party.party", "create", [mapping.party_values(invoice.customer)])
            except Permanent as exc:
                if PARTY_CODE_TAKEN not in str(exc):
                    raise
                party_id = self._party_by_code(code)  # created concurrently
                if party_id is None:
                    raise
        record, = self.client.call("party.party", "read", [party_id], ["addresses"])
        if record["addresses"]:
            return party_id, record["addresses"][0]
        address_id, = self.client.call("party.address", "create", [{"party": party_id}])
        return party_id, address_id

    def _party_by_code(self, code: str) -> int | None:
        ids = self.client.call("party.party", "search", [("code", "=", code)], 0, 1, None)
        return ids[0] if ids else None

    def _already_paid(self, company: int, invoice_id: int, description: str) -> bool:
        # pay_invoice puts the wizard's description on the payment move.
        record = self._read_invoice(company, invoice_id, ["payment_lines"])
        if not record["payment_lines"]:
            return False
        return bool(self.client.call(
            "account.move.line", "search",
            [("id", "in", record["payment_lines"]), ("move.description", "=", description)], 0, 1, None,
            context={"company": company}))

    def _wizard_context(self, company: int, invoice_id: int) -> dict[str, Any]:
        return {"company": company, "active_model": INVOICE, "active_id": invoice_id,
                "active_ids": [invoice_id]}

    def _run_pay_wizard(self, company: int, invoice_id: int, amount: Decimal, date: dt.date,
                        description: str, *, ask: Mapping[str, Any] | None = None) -> None:
        """Tryton's pay wizard. ``ask`` answers its second question when the amount
        is not the amount due; by default a partial payment (the rest stays open)."""
        name, ctx = "account.invoice.pay", self._wizard_context(company, invoice_id)
        session, _, _ = self.client.wizard(name, "create", context=ctx)
        try:
            view = self.client.wizard(name, "execute", session, {}, "start", context=ctx)["view"]
            start = {**_form(view["defaults"]), "amount": amount, "date": date, "description": description,
                     "payment_method": self._payment_method(company)}
            result = self.client.wizard(name, "execute", session, {"start": start}, "choice", context=ctx)
            if result.get("view", {}).get("state") == "ask":
                answer = {**_form(result["view"]["defaults"]), **(ask or {"type": "partial"})}
                self.client.wizard(name, "execute", session, {"start": start, "ask": answer}, "pay", context=ctx)
        finally:
            self.client.wizard(name, "delete", session, context=ctx)

    def _credit_notes(self, company: int, invoice_id: int) -> list[int]:
        """Credit notes whose lines originate from the invoice's lines."""
        lines = self.client.call("account.invoice.line", "search", [("invoice", "=", invoice_id)], 0, None,
                                 None, context={"company": company})
        if not lines:
            return []
        origins = [f"account.invoice.line,{line}" for line in lines]
        # Billing's own credit notes (posted by the hub, with their reference) are
        # partial credits, not the ERP's cancellation of the invoice.
        return self.client.call(
            INVOICE, "search",
            [("lines.origin", "in", origins), ("id", "!=", invoice_id),
             ["OR", ("reference", "=", None), ("reference", "=", "")]], 0, None,
            [("id", "ASC")], context={"company": company})

    def _run_credit_wizard(self, company: int, invoice_id: int, date: dt.date | None = None) -> list[int]:
        """Credit the invoice with refund; the credit note is dated ``date`` (the
        void's date), else today. Tryton numbers invoices and credit notes of a
        company from one sequence in date order, so a backdated void dated today
        would block every later-arriving document of an earlier date."""
        name, ctx = "account.invoice.credit", self._wizard_context(company, invoice_id)
        session, _, _ = self.client.wizard(name, "create", context=ctx)
        try:
            view = self.client.wizard(name, "execute", session, {}, "start", context=ctx)["view"]
            if not view["defaults"].get("with_refund_allowed"):
                raise Permanent(f"Tryton does not allow crediting invoice {invoice_id} with refund")
            start = {**_form(view["defaults"]), "with_refund": True, "invoice_date": date}
            result = self.client.wizard(name, "execute", session, {"start": start}, "credit", context=ctx)
        finally:
            self.client.wizard(name, "delete", session, context=ctx)
        credit_ids: list[int] = []
        for _action, data in result.get("actions", []):
            credit_ids.extend((data or {}).get("res_id", []))
        return credit_ids


def _form(defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Wizard view defaults without the ``field.`` rec_name companions, which the
    server refuses when they are sent back as form values."""
    return {key: value for key, value in defaults.items() if "." not in key}
