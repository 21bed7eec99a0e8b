import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "integration_hub.settings")

app = Celery("integration_hub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["integration_hub.runtime", "integration_hub.workflows", "integration_hub.operations"])

# Celery's Django fixup closes the database connection before and after every task
# unless told to reuse it (a new PostgreSQL connection per task). Reuse it, and apply
# Django's own per-request policy instead: drop a connection that errored or is older
# than CONN_MAX_AGE, keep a healthy one.
app.conf["CELERY_DB_REUSE_MAX"] = 1_000_000_000


@task_prerun.connect
@task_postrun.connect
def _close_unusable_connections(**kwargs) -> None:
    from django.db import close_old_connections

    close_old_connections()
