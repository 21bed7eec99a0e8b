import random
from unittest import mock

import pytest
from django.conf import settings
from hypothesis import given
from hypothesis import strategies as st

from integration_hub.runtime.retry import retry_delay


@given(attempt=st.integers(0, 60), seed=st.integers())
def test_full_jitter_stays_between_zero_and_the_capped_exponential(attempt, seed):
    delay = retry_delay(attempt, rng=random.Random(seed))
    ceiling = min(settings.HUB_RETRY_CAP_SECONDS, settings.HUB_RETRY_BASE_SECONDS * 2**attempt)
    assert 0 <= delay <= ceiling


@given(attempt=st.integers(0, 60), retry_after=st.floats(0, 3600), seed=st.integers())
def test_retry_after_is_honoured_as_a_minimum(attempt, retry_after, seed):
    assert retry_delay(attempt, retry_after=retry_after, rng=random.Random(seed)) >= retry_after


def test_delays_are_spread_not_synchronized():
    rng = random.Random(1)
    assert len({round(retry_delay(5, rng=rng), 3) for _ in range(50)}) > 40


@pytest.mark.parametrize(("native", "countdown", "sent"), [
    (True, 0.3, 1), (True, 2.1, 3), (True, 5.0, 5), (True, None, None),
    (False, 0.3, 0.3), (False, 2.1, 2.1), (False, None, None),
])
def test_a_countdown_on_rabbitmq_delayed_delivery_is_whole_seconds_rounded_up(settings, native, countdown, sent):
    # The broker's delayed delivery refuses under 1 s and counts whole seconds: a
    # countdown rounded down would bring the task back before its row is due.
    from integration_hub.runtime import services

    settings.HUB_NATIVE_DELAYED_DELIVERY = native
    with mock.patch.object(services.celery_app, "send_task") as send_task:
        services._send("hub.deliver", 7, countdown=countdown)
    send_task.assert_called_once_with("hub.deliver", args=[7], countdown=sent, queue=None)
