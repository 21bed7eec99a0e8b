"""The posting-policy engine: pure functions from a document's facts and one policy
version's snapshot to a decision. No database, no I/O: ``canonical.policy_services``
gathers the facts and the snapshot, and stores the decision.

A snapshot is plain JSON (what an approved version freezes)::

    {"version": 3,
     "rules": [{"id": 7, "priority": 10, "name": "…", "countries": ["DE"], "region": "EU",
                "region_countries": ["AT", "DE", …], "tax_status": "b2b", "product_line": "",
                "currency": "", "legal_entity": "EU", "functional_currency": "EUR",
                "revenue_account": "4100", "cost_center": "CC-EMEA", "currency_treatment": "invoice"}],
     "taxes": [{"jurisdiction": "DE", "kind": "country", "countries": ["DE"], "rate": "19",
                "tax_status": "", "tax_code": "DE-VAT-19"}]}

Nothing is guessed: a document no rule covers, two rules of equal priority that both
match, a tax rate no mapping covers, an unknown customer country — each raises
``PolicyMissing`` (or its subclass ``PolicyAmbiguous``) naming what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any


class PolicyMissing(LookupError):
    """No posting policy covers a document; the message names what is missing."""


class PolicyAmbiguous(PolicyMissing):
    """Two rules (or tax mappings) of equal standing both cover a document."""


B2B, B2C, EXEMPT = "b2b", "b2c", "exempt"


@dataclass(frozen=True)
class LineFacts:
    amount: int
    tax_amount: int
    tax_rate: str | None  # percent as billing stated it, e.g. "19"; None when unknown
    product_line: str = ""


@dataclass(frozen=True)
class DocumentFacts:
    """What the policy may look at. ``subdivision`` is the state or province code
    (``CA``) when the address has one."""

    currency: str
    country: str
    subdivision: str = ""
    tax_status: str = B2C
    lines: tuple[LineFacts, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DocumentFacts:
        return cls(**{**data, "lines": tuple(LineFacts(**line) for line in data.get("lines", ()))})


def tax_status_of(*, tax_ids: Sequence[Any], tax_exempt: str | None) -> str:
    """Billing's view of the customer: exempt; B2B when it carries a tax id (or
    billing applies reverse charge); else B2C."""
    if tax_exempt == "exempt":
        return EXEMPT
    if tax_ids or tax_exempt == "reverse":
        return B2B
    return B2C


@dataclass(frozen=True)
class LineDecision:
    rule: str
    revenue_account: str
    cost_center: str
    tax_code: str  # "" = post without ERP tax (an explicit mapping said so)


@dataclass(frozen=True)
class Decision:
    version: int
    legal_entity: str
    currency_treatment: str
    lines: tuple[LineDecision, ...] = field(default_factory=tuple)

    def lines_json(self) -> list[dict[str, str]]:
        return [asdict(line) for line in self.lines]


UNKNOWN_COUNTRY = ("the customer's country is unknown (no billing address country), so no rule or mapping "
                   "that names a place can match: set it in billing, then replay")


def _describe(facts: DocumentFacts, line: LineFacts | None = None) -> str:
    parts = [f"country {facts.country or 'unknown'}", f"tax status {facts.tax_status}", f"currency {facts.currency}"]
    if line is not None:
        parts.append(f"product line {line.product_line or '(none)'}")
    return ", ".join(parts)


def _rule_matches(rule: Mapping[str, Any], facts: DocumentFacts, line: LineFacts) -> bool:
    places = set(rule.get("countries") or ()) | set(rule.get("region_countries") or ())
    if (rule.get("countries") or rule.get("region")) and facts.country not in places:
        return False
    if rule.get("tax_status") and rule["tax_status"] != facts.tax_status:
        return False
    if rule.get("product_line") and rule["product_line"] != line.product_line:
        return False
    return not (rule.get("currency") and rule["currency"] != facts.currency)


def rule_for(rules: Sequence[Mapping[str, Any]], facts: DocumentFacts, line: LineFacts, *, version: int):
    """The first matching rule by priority; PolicyAmbiguous when the first priority
    that matches has two rules; PolicyMissing when none matches."""
    matching = sorted((rule for rule in rules if _rule_matches(rule, facts, line)), key=lambda r: r["priority"])
    if not matching:
        hint = UNKNOWN_COUNTRY if not facts.country else "add one in the admin (a new version), then replay"
        raise PolicyMissing(f"posting policy v{version} has no rule for {_describe(facts, line)}; {hint}")
    if len(matching) > 1 and matching[0]["priority"] == matching[1]["priority"]:
        raise PolicyAmbiguous(
            f"posting policy v{version}: rules {matching[0]['name']!r} and {matching[1]['name']!r} both have "
            f"priority {matching[0]['priority']} and both match {_describe(facts, line)}"
        )
    return matching[0]


_SPECIFICITY = {"subdivision": 0, "country": 1, "region": 2, "any": 3}


def _jurisdiction_matches(mapping: Mapping[str, Any], facts: DocumentFacts) -> bool:
    if mapping["kind"] == "any":
        return True
    if mapping["kind"] == "subdivision":
        return mapping["jurisdiction"] == f"{facts.country}-{facts.subdivision}"
    return facts.country in mapping["countries"]


def _jurisdiction(facts: DocumentFacts) -> str:
    return f"{facts.country}-{facts.subdivision}" if facts.subdivision else facts.country


def line_rate(line: LineFacts) -> Decimal | None:
    """The line's tax rate in percent: billing's stated rate, 0 for an untaxed line,
    None when billing taxed the line without saying at what rate."""
    if line.tax_rate is not None:
        return Decimal(line.tax_rate)
    return Decimal(0) if line.tax_amount == 0 else None


def _rate_fits(mapping: Mapping[str, Any], line: LineFacts, rate: Decimal | None) -> bool:
    if rate is not None:
        return Decimal(mapping["rate"]) == rate
    # Billing did not state the rate: a mapping's rate fits when it reproduces the
    # line's tax within one minor unit (billing rounds per line).
    return abs(Decimal(line.amount) * Decimal(mapping["rate"]) / 100 - line.tax_amount) <= 1


def tax_code_for(taxes: Sequence[Mapping[str, Any]], facts: DocumentFacts, line: LineFacts, *, version: int) -> str:
    """The ERP tax code for the line's jurisdiction and rate: the most specific
    a mapping for the customer's tax status before an any-status one, then the most
    specific jurisdiction (subdivision, country, region, ``*``). When billing did not state the rate, the mapped rates that
    reproduce its tax amount are the candidates. PolicyMissing names jurisdiction
    and rate when none covers it; PolicyAmbiguous when two cover it equally."""
    rate = line_rate(line)
    candidates = [
        mapping for mapping in taxes
        if _rate_fits(mapping, line, rate) and _jurisdiction_matches(mapping, facts)
        and mapping.get("tax_status", "") in ("", facts.tax_status)
    ]
    if not candidates:
        hint = UNKNOWN_COUNTRY if not facts.country else "add a tax mapping, then replay"
        stated = f"rate {rate.normalize():f} %" if rate is not None else (
            f"an unstated rate (tax {line.tax_amount} on {line.amount} minor units)")
        raise PolicyMissing(
            f"posting policy v{version} maps no tax for jurisdiction {_jurisdiction(facts) or 'unknown'} at "
            f"{stated} (tax status {facts.tax_status}); {hint}"
        )
    def rank(mapping: Mapping[str, Any]) -> tuple[int, int]:
        return (0 if mapping.get("tax_status") else 1, _SPECIFICITY[mapping["kind"]])

    ranked = sorted(candidates, key=rank)
    best = ranked[0]
    if len(ranked) > 1 and rank(ranked[1]) == rank(best) and ranked[1]["tax_code"] != best["tax_code"]:
        raise PolicyAmbiguous(
            f"posting policy v{version}: tax mappings {best['jurisdiction']} → {best['tax_code'] or 'no tax'} and "
            f"{ranked[1]['jurisdiction']} → {ranked[1]['tax_code'] or 'no tax'} both cover "
            f"{_jurisdiction(facts) or 'an unknown country'} for tax {line.tax_amount} on {line.amount}"
        )
    return best["tax_code"]


def decide(snapshot: Mapping[str, Any], facts: DocumentFacts) -> Decision:
    """Apply one policy version to one document. Every line must route to the same
    legal entity and currency treatment (one ERP document); each line gets its own
    account, cost center and tax code."""
    version = snapshot["version"]
    if not facts.lines:
        raise PolicyMissing("the document has no lines to post")
    decided = []
    entities: dict[tuple[str, str], str] = {}
    for line in facts.lines:
        rule = rule_for(snapshot["rules"], facts, line, version=version)
        entities.setdefault((rule["legal_entity"], rule["currency_treatment"]), rule["name"])
        if rule["currency_treatment"] == "functional_only" and facts.currency != rule["functional_currency"]:
            raise PolicyMissing(
                f"posting policy v{version} rule {rule['name']!r} books only {rule['functional_currency']} in "
                f"entity {rule['legal_entity']}, and the invoice is in {facts.currency}"
            )
        decided.append(LineDecision(
            rule=rule["name"], revenue_account=rule["revenue_account"], cost_center=rule.get("cost_center", ""),
            tax_code=tax_code_for(snapshot["taxes"], facts, line, version=version),
        ))
    if len(entities) > 1:
        routes = "; ".join(f"{name!r} → {entity} ({treatment})" for (entity, treatment), name in entities.items())
        raise PolicyMissing(f"posting policy v{version} routes the lines of one invoice apart: {routes}")
    (entity, treatment), = entities
    return Decision(version=version, legal_entity=entity, currency_treatment=treatment, lines=tuple(decided))


@dataclass(frozen=True)
class Difference:
    """What a draft version would do to one document, against the current version."""

    document: str
    current: str
    draft: str
    changed: tuple[str, ...]


def _summary(result: Decision | PolicyMissing) -> dict[str, Any]:
    if isinstance(result, PolicyMissing):
        return {"exception": str(result)}
    return {
        "entity": result.legal_entity,
        "account": sorted({line.revenue_account for line in result.lines}),
        "cost center": sorted({line.cost_center for line in result.lines}),
        "tax": sorted({line.tax_code for line in result.lines}),
        "currency": result.currency_treatment,
    }


def _outcome(snapshot: Mapping[str, Any] | None, facts: DocumentFacts) -> Decision | PolicyMissing:
    if snapshot is None:
        return PolicyMissing("no approved version")
    try:
        return decide(snapshot, facts)
    except PolicyMissing as exc:
        return exc


def _text(summary: Mapping[str, Any]) -> str:
    if "exception" in summary:
        return f"exception: {summary['exception']}"
    return "; ".join(f"{key} {', '.join(v or '–' for v in value) if isinstance(value, list) else value}"
                     for key, value in summary.items())


def compare(current: Mapping[str, Any] | None, draft: Mapping[str, Any], facts: DocumentFacts,
            *, document: str) -> Difference:
    """Both versions applied to one document's facts, and which outcomes differ."""
    before, after = _summary(_outcome(current, facts)), _summary(_outcome(draft, facts))
    changed = tuple(key for key in dict.fromkeys([*before, *after]) if before.get(key) != after.get(key))
    return Difference(document=document, current=_text(before), draft=_text(after), changed=changed)
