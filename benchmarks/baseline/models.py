from django.db import models


class Ping(models.Model):
    """One row per request of the baseline endpoint: what a bare DRF insert costs."""

    event_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=100)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
