"""State of scheduled pulls: one row per run (what the API reports) and the
watermark each source has been read up to."""

from __future__ import annotations

from django.db import models


class SyncRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    kind = models.CharField(max_length=50, default="customers")
    connection = models.ForeignKey(
        "connectors.Connection", null=True, blank=True, on_delete=models.SET_NULL, related_name="sync_runs",
        help_text="The source it reads (catalog pulls read one connection)",
    )
    trigger = models.CharField(max_length=20, help_text="api or schedule")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    counts = models.JSONField(
        default=dict, blank=True,
        help_text="customers: per source read/accepted/duplicates; catalog: pages, items_seen, unchanged, "
                  "new_versions, errors, retired",
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} pull #{self.pk} ({self.status})"


class SyncWatermark(models.Model):
    """Changes up to ``value`` have been read from ``connection``; the next pull asks
    for changes at or after it (duplicates are dropped by the inbox)."""

    connection = models.ForeignKey("connectors.Connection", on_delete=models.CASCADE, related_name="watermarks")
    object_type = models.CharField(max_length=50, default="customer")
    value = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "object_type"], name="watermark_unique_per_source")
        ]

    def __str__(self) -> str:
        return f"{self.connection_id} {self.object_type} ≥ {self.value}"
