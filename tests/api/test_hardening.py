"""The API's limits: throttles, a page ceiling, expiring tokens, admin lockout, and
no 500 (nor a traceback) whatever happens inside a view."""

import datetime as dt

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.authtoken.models import Token

from integration_hub.api import views
from integration_hub.api.serializers import detail_without_traceback

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttles():
    cache.clear()
    yield
    cache.clear()


def test_sync_triggers_are_throttled_per_user(api, settings, sent_tasks):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "sync": "2/min"}}
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    try:
        codes = [api.post("/api/syncs/customers/").status_code for _ in range(3)]
    finally:
        SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    assert codes == [202, 202, 429]


def test_replays_have_their_own_throttle_scope():
    for name in ("replay", "replay_many", "edit_and_replay"):
        classes = getattr(views.ExceptionRecordViewSet, name).kwargs["throttle_classes"]
        assert views.ReplayThrottle in classes


def test_a_page_is_never_larger_than_the_maximum(api, settings):
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from integration_hub.api.pagination import HubPagination

    settings.HUB_API_MAX_PAGE_SIZE = 3
    request = Request(APIRequestFactory().get("/api/deliveries/?limit=100000"))
    assert HubPagination().get_limit(request) == 3
    assert api.get("/api/deliveries/?limit=100000").status_code == 200


def test_an_expired_token_is_refused(client, admin_user, settings):
    token = Token.objects.create(user=admin_user)
    Token.objects.filter(pk=token.pk).update(created=timezone.now() - dt.timedelta(days=31))
    settings.HUB_API_TOKEN_TTL_HOURS = 24 * 30
    response = client.get("/api/deliveries/", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code == 401 and "expired" in response.json()["detail"]


def test_admin_login_locks_out_after_repeated_failures(client, admin_user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        client.post("/admin/login/", {"username": admin_user.username, "password": "wrong"})
    # Even the right password is refused while the lockout lasts.
    response = client.post("/admin/login/", {"username": admin_user.username, "password": "password"})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_an_unexpected_error_in_a_view_is_a_400_incident_without_a_traceback(api, monkeypatch, caplog):
    def explode(*args, **kwargs):
        raise KeyError("secret internals")

    monkeypatch.setattr(views, "deliveries_by_state", explode)
    from connectors.services import connection_upsert

    connection_upsert(name="erp", vendor="memory-erp", role="erp", config={}, credentials={})
    response = api.get("/api/connections/")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "unprocessable_input" and body["incident"]
    assert "secret internals" not in response.content.decode() and "Traceback" not in response.content.decode()


def test_api_exception_details_carry_no_traceback():
    detail = "KeyError('x')\nTraceback (most recent call last):\n  File \"a.py\", line 1\nKeyError: 'x'\n"
    assert detail_without_traceback(detail) == "KeyError('x') KeyError: 'x' (traceback in the hub's logs)"
    assert detail_without_traceback("plain") == "plain"
