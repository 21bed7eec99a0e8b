"""Master-data rules: system of record, duplicate keys, validation, merge."""

import pytest

from canonical.contracts import Address, CustomerV1, SourceRef, TaxId
from canonical.dedupe import match_keys, normalize_domain, normalize_name, normalize_tax_id
from canonical.models import CrossReference, Customer, CustomerAlias, FieldConflict, SystemOfRecord
from canonical.services import (
    InvalidCaseTransition,
    conflict_decide,
    customer_apply,
    customer_create,
    customer_merge,
    customer_resolve,
    duplicate_candidates,
)
from canonical.sor import sor_decide
from canonical.validation import customer_problems

OWNERS = {"name": "crm", "addresses": "crm", "tax_registration": "erp", "credit_terms": "erp"}


class TestSystemOfRecord:
    def test_the_owner_changes_its_group(self):
        decision = sor_decide(current={"display_name": "Old"}, incoming={"display_name": "New"},
                              source_role="crm", owners=OWNERS)
        assert decision.changes == {"display_name": "New"} and not decision.conflicts

    def test_a_non_owner_change_is_not_applied_and_conflicts(self):
        decision = sor_decide(current={"display_name": "Old"}, incoming={"display_name": "New"},
                              source_role="billing", owners=OWNERS)
        assert decision.changes == {}
        [conflict] = decision.conflicts
        assert (conflict.field_group, conflict.owner_role, conflict.proposed["display_name"]) == ("name", "crm", "New")

    def test_a_non_owner_may_fill_an_empty_group(self):
        decision = sor_decide(current={"tax_ids": []}, incoming={"tax_ids": [{"type": "eu_vat", "value": "DE1"}]},
                              source_role="crm", owners=OWNERS)
        assert decision.changes == {"tax_ids": [{"type": "eu_vat", "value": "DE1"}]}

    def test_silence_never_erases(self):
        decision = sor_decide(current={"display_name": "Old", "domain": "a.com"},
                              incoming={"display_name": "Old", "domain": ""}, source_role="crm", owners=OWNERS)
        assert decision.changes == {} and not decision.conflicts

    def test_equal_values_from_a_non_owner_are_no_conflict(self):
        assert sor_decide(current={"display_name": "Same"}, incoming={"display_name": "Same"},
                          source_role="billing", owners=OWNERS).conflicts == ()


class TestMatchKeys:
    @pytest.mark.parametrize("raw,expected", [
        ("https://www.Acme.com/about?x=1", "acme.com"), ("ACME.COM.", "acme.com"), ("acme.com:443", "acme.com"),
        ("mailto:ap@acme.com", "acme.com"), ("", "")])
    def test_domains(self, raw, expected):
        assert normalize_domain(raw) == expected

    @pytest.mark.parametrize("a,b", [("Müller Maschinenbau GmbH", "MULLER  maschinenbau"),
                                     ("Acme, Inc.", "ACME"), ("Sakura Robotics K.K.", "sakura robotics kk")])
    def test_names_fold_case_accents_punctuation_and_legal_forms(self, a, b):
        assert normalize_name(a) == normalize_name(b)

    def test_a_name_that_is_only_a_legal_form_keeps_its_words(self):
        assert normalize_name("Company") == "company"

    def test_tax_ids_lose_separators(self):
        assert normalize_tax_id("de 123.456-789") == "DE123456789"

    def test_no_name_key_without_a_country(self):
        keys = match_keys(display_name="Acme", country="", domain="", tax_ids=[])
        assert keys == {"name_key": "", "domain_key": "", "tax_key": ""}


class TestValidation:
    def customer(self, **fields):
        return CustomerV1(source=SourceRef(system="crm", external_id="1"), display_name="Acme",
                          address=Address(country=fields.pop("country", "DE")), **fields)

    def test_a_good_customer_has_no_problems(self):
        assert customer_problems(self.customer(currency="EUR"), known_currencies={"EUR"}) == []

    def test_every_problem_is_reported(self):
        problems = customer_problems(
            self.customer(country="XX", currency="CHF", tax_ids=(TaxId(type="eu_vat", value="DE12"),)),
            known_currencies={"EUR", "USD"})
        assert len(problems) == 3
        assert any("XX" in p for p in problems) and any("CHF" in p for p in problems)

    def test_a_missing_country_is_a_problem(self):
        customer = CustomerV1(source=SourceRef(system="crm", external_id="1"), display_name="Acme")
        assert customer_problems(customer, known_currencies=set()) == ["the billing country is missing"]


def contract(external_id, name="Acme Inc", system="salesforce", **fields):
    return CustomerV1(source=SourceRef(system=system, external_id=external_id), display_name=name,
                      address=Address(country=fields.pop("country", "US")), **fields)


@pytest.mark.django_db
class TestMastering:
    def test_duplicates_are_found_by_any_key(self):
        first = customer_create(contract("001A", domain="https://acme.com"))
        second = customer_create(contract("001B", name="ACME, Inc.", domain="www.acme.com/x"))
        [(candidate, reasons)] = duplicate_candidates(second)
        assert candidate == first and reasons == ["same domain", "same name and country"]
        other = customer_create(contract("001C", name="Acme Inc", country="DE"))
        assert duplicate_candidates(other) == []

    def test_a_billing_change_to_a_crm_owned_name_opens_one_conflict(self):
        customer = customer_create(contract("001A"))
        billing = contract("cus_1", name="Acme Renamed", system="stripe")
        for _ in range(2):
            changed, _ = customer_apply(customer, billing, source_role="billing")
            assert not changed
        conflict = FieldConflict.objects.get()
        assert (conflict.field_group, conflict.owner_role, conflict.status) == ("name", "crm", "open")
        customer.refresh_from_db()
        assert customer.display_name == "Acme Inc" and customer.version == 1

    def test_accepting_a_conflict_applies_it_as_a_new_version(self):
        customer = customer_create(contract("001A"))
        customer_apply(customer, contract("cus_1", name="Acme Renamed", system="stripe"), source_role="billing")
        updated = conflict_decide(FieldConflict.objects.get(), accept=True)
        assert (updated.display_name, updated.version) == ("Acme Renamed", 2)
        with pytest.raises(InvalidCaseTransition):
            conflict_decide(FieldConflict.objects.get(), accept=False)

    def test_an_owner_rule_edited_in_the_admin_takes_effect(self):
        SystemOfRecord.objects.filter(field_group="name").update(owner_role="billing")
        customer = customer_create(contract("001A"))
        changed, conflicts = customer_apply(customer, contract("cus_1", name="Billing Name", system="stripe"),
                                            source_role="billing")
        assert changed and conflicts == []

    def test_merge_moves_free_cross_references_and_aliases_taken_ones(self):
        survivor = customer_create(contract("001A"))
        merged = customer_create(contract("001B", name="Acme Incorporated"))
        CrossReference.objects.create(system="stripe", object_type="customer", canonical_id=merged.pk,
                                      external_id="cus_9")
        customer_merge(merged, survivor)

        assert customer_resolve(system="stripe", external_id="cus_9") == survivor
        assert CrossReference.objects.get(system="stripe").canonical_id == survivor.pk  # moved
        alias = CustomerAlias.objects.get()
        assert (alias.system, alias.external_id, alias.customer, alias.merged_from) == (
            "salesforce", "001B", survivor, merged.pk)
        assert customer_resolve(system="salesforce", external_id="001B") == survivor
        assert CrossReference.objects.get(system="salesforce").external_id == "001A"
        merged.refresh_from_db()
        assert (merged.status, merged.merged_into) == (Customer.Status.MERGED, survivor)
        with pytest.raises(InvalidCaseTransition):
            customer_merge(merged, survivor)

    def test_a_child_created_before_its_parent_is_linked_when_the_parent_arrives(self):
        child = customer_create(contract("001C", name="Child", parent=SourceRef(system="salesforce",
                                                                                 external_id="001P")))
        assert child.parent is None and child.parent_ref == "salesforce:001P"
        parent = customer_create(contract("001P", name="Parent"))
        child.refresh_from_db()
        assert child.parent == parent
