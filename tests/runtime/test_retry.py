import random

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
