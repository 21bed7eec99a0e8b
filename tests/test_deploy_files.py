"""The compose file and the Dockerfile name the same production commands, so what the
stack runs and what the image runs cannot drift apart."""

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

# The hub's services and their commands: what production runs.
COMMANDS = {
    "migrate": ["python", "manage.py", "migrate", "--no-input"],
    "collectstatic": ["python", "manage.py", "collectstatic", "--no-input"],
    "web": ["gunicorn", "integration_hub.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2", "--timeout", "30"],
    "worker": ["celery", "-A", "integration_hub", "worker", "-Q", "hub,hub-customer,hub-catalog", "--loglevel=INFO",
               "--concurrency=2"],
    "finance-worker": ["celery", "-A", "integration_hub", "worker", "-Q", "hub-finance", "-n", "finance@%h",
                       "--loglevel=INFO", "--concurrency=2"],
    "usage-worker": ["celery", "-A", "integration_hub", "worker", "-Q", "hub-usage", "-n", "usage@%h", "--loglevel=INFO",
                     "--concurrency=1"],
    "beat": ["celery", "-A", "integration_hub", "beat", "--loglevel=INFO"],
}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_exactly_the_production_commands_in_production_mode():
    services = _compose()["services"]
    hub = {name: spec for name, spec in services.items() if "build" in spec}
    assert {name: spec["command"] for name, spec in hub.items()} == COMMANDS
    for spec in hub.values():
        assert spec["environment"]["HUB_ENV"] == "production"


def test_the_dockerfile_is_production_and_its_command_is_the_web_service():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ENV .*\bHUB_ENV=production\b", dockerfile, re.M)
    cmd = re.search(r"^CMD (.+)$", dockerfile, re.M).group(1)
    assert json.loads(cmd) == COMMANDS["web"]


def test_compose_has_no_default_secrets_or_insecure_defaults():
    text = (ROOT / "docker-compose.yml").read_text()
    environment = _compose()["x-hub"]["environment"]
    for name in ("SECRET_KEY", "HUB_ENCRYPTION_KEYS", "ALLOWED_HOSTS"):
        assert ":?" in environment[name], f"{name} must be required, not defaulted"
    assert "POSTGRES_PASSWORD:-" not in text and "HUB_SECURE_COOKIES" not in environment


def test_the_compose_workers_together_consume_every_hub_queue():
    # A message on a queue no worker consumes would wait forever (a retry included):
    # the compose file names the queues by HUB_QUEUE's default "hub".
    from django.conf import settings

    consumed = set()
    for spec in _compose()["services"].values():
        command = spec.get("command", [])
        if "worker" in command and "-Q" in command:
            consumed.update(command[command.index("-Q") + 1].split(","))
    default = settings.CELERY_TASK_DEFAULT_QUEUE
    assert consumed == {"hub" + name.removeprefix(default) for name in settings.HUB_QUEUES.values()}
