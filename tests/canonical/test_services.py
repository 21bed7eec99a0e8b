"""The one customer write path (``customer_ingest``): every source's record goes
through system-of-record rules and duplicate detection, and two workers seeing a new
customer at once end with one customer, not a crash and not a duplicate."""

import threading

import pytest
from django.db import connection

from canonical.contracts import CustomerV1, SourceRef
from canonical.models import CrossReference, Customer, DuplicateCase, FieldConflict
from canonical.services import customer_ingest


def _contract(name="Ada", email="ada@example.com", system="stripe", external_id="cus_race", **extra):
    return CustomerV1(source=SourceRef(system=system, external_id=external_id), display_name=name, email=email,
                      **extra)


@pytest.mark.django_db
def test_the_owning_role_updates_and_versions_the_bound_customer():
    first = customer_ingest(_contract(system="salesforce"), source_role="crm")
    second = customer_ingest(_contract(name="Ada Lovelace", system="salesforce"), source_role="crm")
    assert first.created and not second.created
    assert second.customer.pk == first.customer.pk and second.customer.version == 2
    assert second.customer.display_name == "Ada Lovelace"
    again = customer_ingest(_contract(name="Ada Lovelace", system="salesforce"), source_role="crm")
    assert not again.changed and again.customer.version == 2  # no change, no new version


@pytest.mark.django_db
def test_a_role_that_does_not_own_the_name_opens_a_conflict_instead_of_overwriting():
    customer_ingest(_contract(), source_role="billing")
    intake = customer_ingest(_contract(name="Renamed in billing"), source_role="billing")
    assert intake.customer.display_name == "Ada" and not intake.changed
    assert [c.field_group for c in intake.conflicts] == ["name"]
    assert FieldConflict.objects.filter(status="open").count() == 1


@pytest.mark.django_db
def test_second_hand_data_only_fills_gaps_and_never_opens_conflicts():
    customer_ingest(_contract(name="Ada Lovelace", email=None), source_role="crm")
    intake = customer_ingest(_contract(name="ADA (from an invoice)", email="other@example.com"), second_hand=True)
    assert (intake.customer.display_name, intake.customer.email) == ("Ada Lovelace", "other@example.com")
    assert not FieldConflict.objects.exists()


@pytest.mark.django_db
def test_a_first_sighting_from_billing_that_matches_a_crm_customer_is_held_as_a_duplicate():
    crm = customer_ingest(_contract(name="Acme GmbH", system="salesforce", external_id="001A",
                                    domain="acme.example"), source_role="crm").customer
    intake = customer_ingest(_contract(name="ACME GmbH", external_id="cus_acme", domain="www.acme.example"),
                             source_role="billing")
    assert intake.created and intake.held and intake.customer.status == Customer.Status.HELD
    case = DuplicateCase.objects.get(customer=intake.customer)
    assert case.survivor_id == crm.pk


@pytest.mark.django_db
def test_a_record_the_hub_created_in_billing_binds_to_its_canonical_customer_instead_of_a_twin():
    crm = customer_ingest(_contract(system="salesforce", external_id="001A"), source_role="crm").customer
    intake = customer_ingest(_contract(external_id="cus_made_by_hub", canonical_id=crm.pk), source_role="billing")
    assert intake.customer.pk == crm.pk and not intake.created
    assert CrossReference.objects.filter(system="stripe", external_id="cus_made_by_hub",
                                         canonical_id=crm.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_sightings_make_one_customer():
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serializes writers; the race needs a server database (CI runs PostgreSQL)")
    barrier, results, errors = threading.Barrier(4), [], []

    def ingest():
        try:
            barrier.wait()
            results.append(customer_ingest(_contract(), source_role="billing").customer.pk)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=ingest) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(set(results)) == 1
    assert Customer.objects.count() == 1 and CrossReference.objects.count() == 1
