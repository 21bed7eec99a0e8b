"""Settings of the benchmark's web server: the hub's own settings, plus the baseline
app and its URL. Never used in production; production URLs stay untouched."""

from integration_hub.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "benchmarks.baseline"]  # noqa: F405
ROOT_URLCONF = "benchmarks.urls"
