"""Settings fail loudly: misspelled Celery settings and a production mode missing
its secrets are errors, not silent defaults."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery.app.defaults import DEFAULTS
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_celery_setting_is_one_celery_knows():
    known = {f"CELERY_{name.upper()}" for name in DEFAULTS}
    ours = {name for name in dir(settings) if name.startswith("CELERY_")}
    assert ours - known == set()


def test_a_misspelled_celery_setting_would_be_caught():
    known = {f"CELERY_{name.upper()}" for name in DEFAULTS}
    assert "CELERY_TASK_ACKS_LATE" in known and "CELERY_TASK_ACK_LATE" not in known


def test_reliability_settings_are_in_force():
    from integration_hub.celery import app

    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.task_ignore_result and conf.result_backend is None
    assert conf.task_soft_time_limit < conf.task_time_limit < settings.HUB_IN_FLIGHT_LEASE_SECONDS
    assert conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"
    if settings.CELERY_BROKER_URL.startswith("redis"):
        assert conf.task_time_limit < conf.broker_transport_options["visibility_timeout"]


SECRET = "k3y-" + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"
PRODUCTION = {
    "HUB_ENV": "production", "SECRET_KEY": SECRET, "DATABASE_URL": "sqlite:///x.db",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0", "ALLOWED_HOSTS": "hub.example.com",
    "HUB_ENCRYPTION_KEYS": "ZmRlYWRiZWVmZmRlYWRiZWVmZmRlYWRiZWVmZmRlYWQ=",
}
_UNSET = {"SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "HUB_ENV", "ALLOWED_HOSTS", "DEBUG",
          "HUB_ENCRYPTION_KEYS"}


def _load_settings(env: dict[str, str], code: str = "import django; django.setup()") -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in _UNSET}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT, env={**clean, "DJANGO_SETTINGS_MODULE": "integration_hub.settings", **env},
        capture_output=True, text=True, timeout=60,
    )


def test_without_hub_env_the_hub_is_in_production_and_refuses_to_start_unconfigured():
    result = _load_settings({})
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr
    assert "HUB_ENV=development" in result.stderr  # the message says how to run a checkout


def test_production_refuses_to_start_without_a_secret_key():
    result = _load_settings({"HUB_ENV": "production"})
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_production_refuses_to_start_without_a_broker():
    result = _load_settings({"HUB_ENV": "production", "SECRET_KEY": SECRET, "DATABASE_URL": "sqlite:///x.db"})
    assert result.returncode != 0 and "CELERY_BROKER_URL must be set" in result.stderr


@pytest.mark.parametrize("change, message", [
    ({"SECRET_KEY": "dev-only-insecure-key-change-me"}, "SECRET_KEY must be a random value"),
    ({"SECRET_KEY": "x" * 60}, "SECRET_KEY must be a random value"),
    ({"DEBUG": "true"}, "DEBUG cannot be on"),
    ({"ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS must name"),
    ({"HUB_ENCRYPTION_KEYS": ""}, "HUB_ENCRYPTION_KEYS must be set"),
])
def test_production_refuses_insecure_settings(change, message):
    result = _load_settings({**PRODUCTION, **change})
    assert result.returncode != 0 and message in result.stderr


def test_production_starts_with_everything_set_and_is_locked_down():
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, "
            "s.CSRF_COOKIE_SECURE, s.CSRF_TRUSTED_ORIGINS, s.HUB_ALLOWED_INTERNAL_HOSTS)")
    result = _load_settings(PRODUCTION, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "False True 31536000 True True ['https://hub.example.com'] []"


def test_check_deploy_passes_in_production_mode():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env={**{k: v for k, v in os.environ.items() if k not in _UNSET}, **PRODUCTION},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


_BROKER_CODE = (
    "import json, django; django.setup(); from integration_hub.celery import app; c = app.conf; "
    "q = list(app.amqp.queues.values()); "
    "print(json.dumps([c.broker_transport_options, c.task_acks_late, c.task_reject_on_worker_lost, "
    "[(x.name, x.exchange.type, x.routing_key, x.queue_arguments) for x in q], "
    "c.task_create_missing_queue_type]))"
)


QUEUES = ["hub-x", "hub-x-finance", "hub-x-customer", "hub-x-catalog", "hub-x-usage"]


def test_on_rabbitmq_the_queues_are_quorum_queues_on_topic_exchanges_with_publisher_confirms():
    import json

    result = _load_settings({"HUB_ENV": "development", "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
                             "HUB_QUEUE": "hub-x"}, _BROKER_CODE)
    assert result.returncode == 0, result.stderr
    options, acks_late, reject_on_lost, queues, missing = json.loads(result.stdout.strip().splitlines()[-1])
    assert options == {"confirm_publish": True} and acks_late and reject_on_lost
    # Every hub queue, the one per workflow class: a worker without -Q consumes them all.
    assert queues == [[name, "topic", name, {"x-queue-type": "quorum"}] for name in QUEUES]
    assert missing == "quorum"


def test_on_redis_the_queues_stay_plain_lists_with_the_visibility_timeout():
    import json

    result = _load_settings({"HUB_ENV": "development", "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
                             "HUB_QUEUE": "hub-x"}, _BROKER_CODE)
    assert result.returncode == 0, result.stderr
    options, _, _, queues, missing = json.loads(result.stdout.strip().splitlines()[-1])
    assert options == {"visibility_timeout": 3600, "socket_timeout": 5, "socket_connect_timeout": 5}
    assert [(name, arguments) for name, _, _, arguments in queues] == [(name, None) for name in QUEUES]
    assert missing != "quorum"


def test_two_workflow_classes_may_share_a_queue_declared_once():
    # E.g. finance kept on the default queue: HUB_FINANCE_QUEUE=<HUB_QUEUE>.
    import json

    result = _load_settings({"HUB_ENV": "development", "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
                             "HUB_QUEUE": "hub-x", "HUB_FINANCE_QUEUE": "hub-x"}, _BROKER_CODE)
    assert result.returncode == 0, result.stderr
    queues = json.loads(result.stdout.strip().splitlines()[-1])[3]
    assert [name for name, *_ in queues] == [name for name in QUEUES if name != "hub-x-finance"]
