"""The upgrade path: an installation with legal entities and no posting policy gets a
draft v1 drafted from its entities (never approved by the migration); until finance
approves it, new invoices wait as policy exceptions; once approved it decides as the
old rule did. A fresh installation, or one with a version, is left alone."""

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from canonical.models import PostingPolicyVersion
from canonical.policy import DocumentFacts, LineFacts, PolicyMissing, decide
from canonical.policy_services import policy_problems, policy_version_approve, policy_version_in_effect

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE, UPGRADE = ("canonical", "0008_exchange_rates"), ("canonical", "0009_upgrade_policy_draft")


@pytest.fixture(autouse=True)
def _schema_back_to_the_latest():
    """Each test takes the schema back in time; later tests need it whole again
    (migrations after ``UPGRADE`` add columns the rest of the suite uses)."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def migrate(target):
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


def test_an_upgraded_installation_with_entities_gets_a_draft_for_finance_to_approve(admin_user):
    old = migrate(BEFORE)
    entity = old.get_model("canonical", "LegalEntity")
    entity.objects.create(code="US", name="Acme US Inc.", currency="USD", country="US")
    entity.objects.create(code="EU", name="Acme Europe GmbH", currency="EUR", country="DE")
    migrate(UPGRADE)

    [draft] = PostingPolicyVersion.objects.all()
    assert (draft.number, draft.status, draft.approved_by) == (1, "draft", None)
    assert [(r.priority, r.currency, r.legal_entity.code, r.currency_treatment) for r in draft.rules.order_by(
        "priority")] == [(10, "EUR", "EU", "functional_only"), (20, "USD", "US", "functional_only")]
    assert policy_problems(draft) == []
    # Until it is approved, nothing decides: new invoices are policy exceptions.
    assert policy_version_in_effect(dt.date.today()) is None

    approved = policy_version_approve(draft, user=admin_user, effective_from=dt.date(2000, 1, 1))
    euro = DocumentFacts(currency="EUR", country="FR", lines=(LineFacts(amount=1000, tax_amount=0, tax_rate="0"),))
    assert decide(approved.snapshot, euro).legal_entity == "EU"
    taxed = DocumentFacts(currency="EUR", country="FR", lines=(LineFacts(amount=1000, tax_amount=200, tax_rate="20"),))
    with pytest.raises(PolicyMissing, match="at rate 20 %"):
        decide(approved.snapshot, taxed)  # tax codes are finance's to map before approving


def test_a_fresh_installation_and_one_with_a_version_are_left_alone(legal_entities):
    migrate(BEFORE)
    migrate(UPGRADE)  # entities and the bootstrap version exist: nothing drafted
    assert list(PostingPolicyVersion.objects.values_list("number", "status")) == [(1, "approved")]
    PostingPolicyVersion.objects.all().delete()
    for entity in legal_entities.values():
        entity.delete()
    migrate(BEFORE)
    migrate(UPGRADE)  # no entities: a fresh installation
    assert not PostingPolicyVersion.objects.exists()
