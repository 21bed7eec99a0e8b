"""The posting-policy engine (pure) and its versions: first match by priority, tax
by jurisdiction and rate, and every gap a PolicyMissing naming what is missing."""

import datetime as dt

import pytest

from canonical.policy import (
    B2B,
    B2C,
    EXEMPT,
    DocumentFacts,
    LineFacts,
    PolicyAmbiguous,
    PolicyMissing,
    compare,
    decide,
    tax_status_of,
)


def rule(priority, name, entity="EU", **match):
    return {"priority": priority, "name": name, "countries": [], "region": "", "region_countries": [],
            "tax_status": "", "product_line": "", "currency": "", "legal_entity": entity,
            "functional_currency": {"EU": "EUR", "US": "USD", "JP": "JPY"}[entity], "revenue_account": "4100",
            "cost_center": "CC-EMEA", "currency_treatment": "invoice", **match}


def tax(jurisdiction, rate, code, kind="country", countries=None, status=""):
    return {"jurisdiction": jurisdiction, "kind": kind, "countries": countries or [jurisdiction[:2]],
            "rate": rate, "tax_status": status, "tax_code": code}


EU = ["AT", "DE", "FR", "IT"]
POLICY = {
    "version": 4,
    "rules": [
        rule(10, "services EMEA", region="EU", region_countries=EU, product_line="services", revenue_account="4200",
             cost_center="CC-SERVICES"),
        rule(20, "EU customers", region="EU", region_countries=EU),
        rule(30, "Gulf", countries=["KW", "BH"], cost_center="CC-GULF"),
        rule(40, "Americas", entity="US", countries=["US", "CA"], cost_center="CC-AMER"),
        rule(50, "Japan yen only", entity="JP", countries=["JP"], currency_treatment="functional_only",
             cost_center="CC-APAC"),
    ],
    "taxes": [
        tax("DE", "19", "DE-VAT-19"), tax("DE", "7", "DE-VAT-7"), tax("FR", "20", "FR-VAT-20"),
        tax("EU", "0", "EU-RC-0", kind="region", countries=EU, status=B2B),
        tax("*", "0", "EXEMPT-0", kind="any", countries=[], status=EXEMPT),
        tax("KW", "0", ""), tax("US-CA", "7.25", "US-CA-SALES", kind="subdivision"), tax("US", "0", ""),
        tax("JP", "10", "JP-CT-10"),
    ],
}


def facts(country="DE", currency="EUR", status=B2C, lines=((1000, 190, "19", ""),), subdivision=""):
    return DocumentFacts(currency=currency, country=country, subdivision=subdivision, tax_status=status,
                         lines=tuple(LineFacts(a, t, r, p) for a, t, r, p in lines))


def test_a_german_consumer_at_19_percent_posts_to_the_eu_entity_with_german_vat():
    decision = decide(POLICY, facts())
    assert (decision.version, decision.legal_entity, decision.currency_treatment) == (4, "EU", "invoice")
    [line] = decision.lines
    assert (line.rule, line.revenue_account, line.cost_center, line.tax_code) == (
        "EU customers", "4100", "CC-EMEA", "DE-VAT-19")


def test_a_b2b_customer_with_a_vat_id_and_no_tax_is_reverse_charge():
    [line] = decide(POLICY, facts(country="FR", status=B2B, lines=((5000, 0, None, ""),))).lines
    assert line.tax_code == "EU-RC-0"


def test_each_line_gets_its_own_account_cost_center_and_tax_by_product_line_and_rate():
    decision = decide(POLICY, facts(lines=((1000, 190, "19", "subscription"), (2000, 140, "7", "services"))))
    assert [(line.rule, line.revenue_account, line.cost_center, line.tax_code) for line in decision.lines] == [
        ("EU customers", "4100", "CC-EMEA", "DE-VAT-19"), ("services EMEA", "4200", "CC-SERVICES", "DE-VAT-7")]


def test_the_most_specific_jurisdiction_wins_us_state_sales_tax():
    decision = decide(POLICY, facts(country="US", subdivision="CA", currency="USD", lines=((10000, 725, "7.25", ""),)))
    assert (decision.legal_entity, decision.lines[0].tax_code) == ("US", "US-CA-SALES")


def test_an_exempt_customer_maps_to_the_exempt_code_anywhere():
    assert decide(POLICY, facts(country="US", currency="USD", status=EXEMPT,
                                lines=((100, 0, None, ""),))).lines[0].tax_code == "EXEMPT-0"


def test_a_kuwaiti_customer_in_kwd_posts_to_the_entity_the_policy_names_in_kwd():
    decision = decide(POLICY, facts(country="KW", currency="KWD", lines=((12345, 0, None, ""),)))
    assert (decision.legal_entity, decision.currency_treatment, decision.lines[0].cost_center) == (
        "EU", "invoice", "CC-GULF")


def test_a_country_no_rule_covers_names_what_is_missing():
    with pytest.raises(PolicyMissing, match="no rule for country BR, tax status b2c, currency BRL"):
        decide(POLICY, facts(country="BR", currency="BRL", lines=((100, 0, None, ""),)))


def test_an_unknown_customer_country_is_a_policy_gap_not_a_guess():
    with pytest.raises(PolicyMissing, match="country is unknown"):
        decide(POLICY, facts(country=""))


def test_a_rate_with_no_mapping_names_jurisdiction_and_rate():
    with pytest.raises(PolicyMissing, match=r"jurisdiction DE at rate 16 %"):
        decide(POLICY, facts(lines=((1000, 160, "16", ""),)))


def test_an_unstated_rate_is_matched_by_the_amount_billing_computed():
    assert decide(POLICY, facts(lines=((1000, 70, None, ""),))).lines[0].tax_code == "DE-VAT-7"
    with pytest.raises(PolicyMissing, match="unstated rate"):
        decide(POLICY, facts(lines=((1000, 55, None, ""),)))


def test_two_rules_of_equal_priority_that_both_match_are_ambiguous():
    policy = {**POLICY, "rules": [rule(10, "A", countries=["DE"]), rule(10, "B", region="EU", region_countries=EU)]}
    with pytest.raises(PolicyAmbiguous, match="'A' and 'B' both have priority 10"):
        decide(policy, facts())


def test_a_functional_only_rule_refuses_another_currency():
    with pytest.raises(PolicyMissing, match="books only JPY in entity JP, and the invoice is in USD"):
        decide(POLICY, facts(country="JP", currency="USD", lines=((100, 10, "10", ""),)))


def test_lines_routed_to_different_entities_are_refused():
    policy = {**POLICY, "rules": [rule(1, "svc", entity="US", product_line="services"), *POLICY["rules"]]}
    with pytest.raises(PolicyMissing, match="routes the lines of one invoice apart"):
        decide(policy, facts(lines=((1000, 190, "19", ""), (1000, 190, "19", "services"))))


def test_tax_status_follows_billing():
    assert tax_status_of(tax_ids=[{"type": "eu_vat", "value": "DE1"}], tax_exempt="none") == B2B
    assert tax_status_of(tax_ids=[], tax_exempt="reverse") == B2B
    assert tax_status_of(tax_ids=[{"type": "eu_vat", "value": "DE1"}], tax_exempt="exempt") == EXEMPT
    assert tax_status_of(tax_ids=[], tax_exempt=None) == B2C


def test_a_dry_run_comparison_names_what_changes_and_shows_exceptions():
    draft = {**POLICY, "version": 5, "rules": [rule(20, "EU customers", region="EU", region_countries=EU,
                                                    cost_center="CC-DACH")]}
    difference = compare(POLICY, draft, facts(), document="INV-1")
    assert difference.changed == ("cost center",)
    assert "CC-EMEA" in difference.current and "CC-DACH" in difference.draft
    gone = compare(POLICY, draft, facts(country="KW", currency="KWD", lines=((1, 0, None, ""),)), document="INV-2")
    assert gone.draft.startswith("exception:") and "entity" in gone.changed


# ---------------------------------------------------------------- versions (database)


@pytest.fixture
def finance_user(db, django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("fin", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="approve_postingpolicyversion"))
    return django_user_model.objects.get(pk=user.pk)


@pytest.fixture
def draft(legal_entities):
    from canonical.models import PostingPolicyVersion, PostingRule, TaxMapping
    from canonical.policy_services import policy_version_draft

    version = policy_version_draft(base=PostingPolicyVersion.objects.get(number=1), note="DE VAT")
    PostingRule.objects.create(version=version, priority=1, name="Germany", countries=["DE"],
                               legal_entity=legal_entities["EU"], revenue_account="4100", cost_center="CC-EMEA")
    TaxMapping.objects.create(version=version, jurisdiction="DE", rate=19, tax_code="DE-VAT-19")
    return version


def test_only_a_finance_user_approves_and_an_approved_version_is_frozen(draft, finance_user, admin_user,
                                                                        django_user_model):
    from canonical.policy_services import PolicyNotEditable, policy_version_approve, rules_edit_guard

    clerk = django_user_model.objects.create_user("clerk", password="x", is_staff=True)
    with pytest.raises(PermissionError, match="may not approve"):
        policy_version_approve(draft, user=clerk, effective_from=dt.date(2030, 1, 1))
    approved = policy_version_approve(draft, user=finance_user, effective_from=dt.date(2030, 1, 1))
    assert approved.snapshot["rules"][0]["name"] == "Germany" and approved.approved_by == finance_user
    with pytest.raises(PolicyNotEditable):
        rules_edit_guard(approved)
    with pytest.raises(PolicyNotEditable):
        policy_version_approve(approved, user=admin_user, effective_from=dt.date(2030, 1, 1))


def test_a_version_with_equal_priorities_cannot_be_approved(draft, finance_user, legal_entities):
    from canonical.models import PostingRule
    from canonical.policy_services import PolicyInvalid, policy_version_approve

    PostingRule.objects.create(version=draft, priority=1, name="Germany too", countries=["DE"],
                               legal_entity=legal_entities["US"], revenue_account="4100")
    with pytest.raises(PolicyInvalid, match="share priority 1"):
        policy_version_approve(draft, user=finance_user, effective_from=dt.date(2030, 1, 1))


def test_the_version_in_effect_is_chosen_by_the_document_date(draft, finance_user):
    from canonical.policy_services import policy_version_approve, policy_version_in_effect

    policy_version_approve(draft, user=finance_user, effective_from=dt.date(2030, 1, 1))
    assert policy_version_in_effect(dt.date(2029, 12, 31)).number == 1
    assert policy_version_in_effect(dt.date(2030, 1, 1)).number == draft.number
    assert policy_version_in_effect(dt.date(1999, 1, 1)) is None
