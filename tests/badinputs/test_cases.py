"""Every bad-input case against the real web stack (Django's test client through the
full middleware chain, the test database, the worker's code for Stripe events):
the answer it must give, the rows it stored and the exceptions it opened."""

from __future__ import annotations

import datetime as dt
import random
from functools import cached_property

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.utils import timezone
from rest_framework.authtoken.models import Token

from connectors.errors import Permanent
from integration_hub.runtime.models import ExceptionRecord, InboundEvent
from tests.badinputs import conftest
from tests.badinputs.cases import CASES, SECRET, Case, Request, stripe_event, stripe_request
from tests.helpers import drain

pytestmark = [pytest.mark.badinputs, pytest.mark.django_db(transaction=True)]


class Context:
    def __init__(self, client, sent_tasks, memory_erp):
        from connectors.stripe.sandbox import StripeSandbox

        self.client, self.sent_tasks, self.erp = client, sent_tasks, memory_erp
        self.sandbox = StripeSandbox(SECRET, seed=random.getrandbits(64))

    def send(self, request: Request):
        headers = dict(request.headers)
        if request.token:
            headers["HTTP_AUTHORIZATION"] = f"Token {self.token(request.token)}"
        return self.client.generic(request.method, request.path, data=request.body,
                                   content_type=request.content_type, **headers)

    def token(self, kind: str) -> str:
        if kind == "bogus":
            return "0" * 40
        user, _ = get_user_model().objects.get_or_create(username=f"ops-{kind}", defaults={"is_staff": True})
        # A valid (or expired) token is a finance operator's, who owns the exceptions the
        # cases act on; "sales" is a user of another team, who must see none of them.
        user.groups.add(Group.objects.get(name="Sales operations" if kind == "sales" else "Finance operations"))
        token, _ = Token.objects.get_or_create(user=user)
        if kind == "expired":
            Token.objects.filter(pk=token.pk).update(created=timezone.now() - dt.timedelta(days=400))
        return token.key

    def replay_of(self, request: Request) -> Request:
        assert self.send(request).status_code == 200
        drain(self.sent_tasks)
        return request

    def swap_body(self, request: Request, body: bytes) -> Request:
        request.body = body
        return request

    def with_object_id(self, event: dict, object_id: str) -> Request:
        event["data"]["object"]["id"] = object_id
        return stripe_request(event)

    @cached_property
    def ids(self) -> dict[str, int]:
        """An open exception about an inbound event, and one about a dead delivery."""
        self.send(_name_fault(self))
        drain(self.sent_tasks)
        self.erp.failures.append(Permanent("ERP rejected the invoice"))
        self.send(stripe_request(stripe_event(self)))
        drain(self.sent_tasks)
        inbound = ExceptionRecord.objects.filter(inbound_event__isnull=False).latest("pk")
        delivery = ExceptionRecord.objects.filter(delivery__isnull=False).latest("pk")
        return {"exception": inbound.pk, "delivery_exception": delivery.pk}


def _name_fault(ctx) -> Request:
    event = stripe_event(ctx)
    event["data"]["object"]["customer_name"] = "N" * 400
    return stripe_request(event)


@pytest.fixture
def ctx(client, sent_tasks, memory_erp, legal_entities):
    from django.apps import apps

    from connectors.services import connection_upsert
    from integration_hub.operations.roles import console_seed

    cache.clear()
    console_seed(apps)  # the role groups (a flushed test database has lost the migration's rows)
    client.raise_request_exception = False  # a 500 must show as a 500, not as a test error
    for vendor, role in (("stripe", "billing"), ("hubspot", "crm"), ("salesforce", "crm")):
        connection_upsert(name=vendor, vendor=vendor, role=role, config={},
                          credentials={"webhook_secrets": [SECRET], "access_token": "unused"})
    return Context(client, sent_tasks, memory_erp)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input(case: Case, ctx):
    request = case.build(ctx)
    if case.target == "rest":
        _ = ctx.ids  # the exceptions the REST cases act on exist before counting
    rows_before, exceptions_before = InboundEvent.objects.count(), ExceptionRecord.objects.count()

    status = ctx.send(request).status_code
    rows = InboundEvent.objects.count() - rows_before
    if case.process:
        drain(ctx.sent_tasks)
    opened = ExceptionRecord.objects.count() - exceptions_before

    problems = []
    if status >= 500:
        problems.append("5xx")
    if not case.allows(status):
        problems.append(f"expected {case.expected}")
    if case.forged and rows:
        problems.append("stored a forged or malformed request")
    if case.valid and not rows:
        problems.append("lost a valid event")
    if case.process and rows:
        unfinished = InboundEvent.objects.filter(status=InboundEvent.Status.RECEIVED).count()
        if unfinished:
            problems.append(f"{unfinished} event(s) neither processed nor failed")
    conftest.RESULTS.append({
        "case": case.name, "expected": case.expected, "got": status, "rows": rows,
        "exception": opened if case.process or case.target == "rest" else "—",
        "verdict": "ok" if not problems else "; ".join(problems),
        "forged": case.forged, "valid": case.valid,
    })
    assert not problems, problems
