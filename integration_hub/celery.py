import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "integration_hub.settings")

app = Celery("integration_hub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["integration_hub.runtime"])
