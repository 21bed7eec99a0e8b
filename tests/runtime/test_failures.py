"""The failure table: one row per exception class, resolved by inheritance; workflows
add rows of their own, and data faults go to the workflow's data owner."""

import pytest

from canonical.services import PolicyMissing
from connectors.errors import MappingError, NeedsConfiguration, Permanent, RateLimited, Retryable
from integration_hub.runtime import dispatch
from integration_hub.runtime.failures import (
    DATA_OWNER,
    Failure,
    failure_of,
    outcome_unknown,
    register_failure,
)


class VendorSpecificRefusal(Permanent):
    """A connector's own subclass, with no row of its own."""


@pytest.mark.parametrize(("exc", "outcome", "governor", "retry", "category"), [
    (Retryable("503"), "retryable", "failure", True, "retries_exhausted"),
    (RateLimited("429", retry_after=3), "rate_limited", "rate_limited", True, "retries_exhausted"),
    (Permanent("400"), "permanent", "neutral", False, "rejected"),
    (NeedsConfiguration("401"), "permanent", "neutral", False, "configuration"),
    (MappingError("bad field"), "permanent", "neutral", False, "mapping"),
    (KeyError("a bug"), "error", "failure", True, "processing"),
])
def test_each_class_of_the_taxonomy_has_its_row(exc, outcome, governor, retry, category):
    failure = failure_of(exc)
    assert (failure.outcome, failure.governor, failure.retry, failure.category) == (outcome, governor, retry, category)


def test_a_subclass_without_a_row_inherits_its_parents():
    assert failure_of(VendorSpecificRefusal("no")) is failure_of(Permanent("no"))


def test_a_registered_row_wins_over_the_inherited_one():
    class Special(Retryable):
        pass

    row = Failure("permanent", "neutral", retry=False, team="finance", category="rejected")
    register_failure(Special, row)
    assert failure_of(Special("x")) is row and failure_of(Retryable("x")).retry


def test_the_invoice_workflow_registers_policy_gaps_for_its_data_owner():
    failure = failure_of(PolicyMissing("no legal entity books XAF"))
    assert (failure.retry, failure.team, failure.category) == (False, DATA_OWNER, "policy")
    assert dispatch.data_owner("invoice", default="it_operations") == "finance"
    assert dispatch.data_owner("customer", default="it_operations") == "sales_operations"
    assert dispatch.data_owner("something-new", default="it_operations") == "it_operations"


def test_outcome_is_unknown_only_when_the_call_may_have_landed():
    assert outcome_unknown(Retryable("timeout", outcome_unknown=True))
    assert not outcome_unknown(Retryable("connect refused"))
    assert not outcome_unknown(Permanent("400"))
    assert outcome_unknown(RuntimeError("escaped mid-call"))


def test_a_second_workflow_cannot_claim_an_action_another_registered():
    taken = next(iter(dispatch.workflows())).actions[0]
    with pytest.raises(ValueError, match="already registered"):
        dispatch.register_workflow(dispatch.Workflow(
            name="intruder", title="x", pattern="x", data_owner="finance", actions=(taken,),
        ))
    assert "intruder" not in {w.name for w in dispatch.workflows()}
