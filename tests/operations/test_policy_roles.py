"""Posting-policy approval is a real permission held by a role: finance edits drafts,
the Policy approver approves them (admin and service alike), and the dashboard
counts the versions awaiting approval, linking to exactly that list."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission

from canonical.models import PostingPolicyVersion
from canonical.policy_services import policy_version_approve, policy_version_draft
from integration_hub.operations.dashboard import business_figures
from tests.operations.conftest import _person

pytestmark = pytest.mark.django_db
TITLE = "Posting policy versions awaiting approval"


@pytest.fixture
def draft(legal_entities):
    return policy_version_draft(base=PostingPolicyVersion.objects.get(number=1), note="next")


def test_finance_edits_drafts_and_only_the_policy_approver_approves(people, draft, client):
    finance, approver = people["finance"], _person("paula", "Policy approver")
    assert finance.has_perm("canonical.change_postingrule") and not finance.has_perm(
        "canonical.approve_postingpolicyversion")
    with pytest.raises(PermissionError, match="approve_postingpolicyversion"):
        policy_version_approve(draft, user=finance, effective_from=dt.date.today())
    client.force_login(finance)
    refused = client.post(f"/admin/canonical/postingpolicyversion/{draft.pk}/approve/",
                          {"effective_from": dt.date.today().isoformat()})
    assert refused.status_code == 403
    client.force_login(approver)
    done = client.post(f"/admin/canonical/postingpolicyversion/{draft.pk}/approve/",
                       {"effective_from": dt.date.today().isoformat()})
    assert done.status_code == 302
    draft.refresh_from_db()
    assert (draft.status, draft.approved_by) == ("approved", approver)


def test_the_unused_approve_release_permission_is_gone(db):
    assert not Permission.objects.filter(content_type__app_label="operations", codename="approve_release").exists()


def test_the_dashboard_counts_versions_awaiting_approval_and_links_to_them(people, draft, client):
    policy_version_draft(base=draft, note="another")
    [figure] = [f for flow in business_figures(people["finance"]) for f in flow["figures"] if f.title == TITLE]
    assert figure.value == 2
    client.force_login(people["finance"])
    page = client.get(figure.link)
    assert page.status_code == 200 and page.context["cl"].result_count == 2


def test_finance_and_it_may_load_exchange_rates_and_others_may_not(people):
    assert all(people[who].has_perm("canonical.load_exchangerate") for who in ("finance", "it"))
    assert not any(people[who].has_perm("canonical.load_exchangerate") for who in ("sales", "product", "readonly"))
