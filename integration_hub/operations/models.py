"""The console's own records: notes on exceptions, the SLA per exception category,
and the permissions people's actions need (granted through the role groups)."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models

from integration_hub.runtime.models import ExceptionRecord


class Console(models.Model):
    """No table: it only carries the console's permissions (``operations.<codename>``),
    which the role groups grant and every admin action and API endpoint checks."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("replay_exception", "Can replay one exception (its dead delivery or failed event)"),
            ("bulk_replay_exception", "Can replay many exceptions at once"),
            ("edit_and_replay_exception", "Can correct what an exception is about and replay it"),
            ("work_exception", "Can acknowledge, assign, annotate, resolve and dismiss exceptions"),
            ("decide_conflict", "Can accept or reject a system-of-record conflict"),
            ("merge_duplicate", "Can merge or release a possible duplicate customer"),
            ("trigger_sync", "Can start a scheduled pull by hand"),
            ("view_all_teams", "Can see every team's exceptions and transactions"),
            ("view_console", "Can see the dashboard, the inventory and the metrics"),
        ]


class ExceptionSla(models.Model):
    """How long an exception of one category may stay open, and how loud it is: a
    high-severity one e-mails its team when it opens; any one e-mails when it passes
    its SLA. Edited in the admin; the migration seeds one row per category."""

    class Severity(models.TextChoices):
        HIGH = "high"
        NORMAL = "normal"

    category = models.CharField(max_length=30, choices=ExceptionRecord.Category.choices, unique=True)
    hours = models.PositiveIntegerField(help_text="Open longer than this breaches the SLA")
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.NORMAL)

    class Meta:
        verbose_name = "exception SLA"
        ordering = ["category"]

    def __str__(self) -> str:
        return f"{self.get_category_display()}: {self.hours} h ({self.severity})"

    @property
    def window(self) -> dt.timedelta:
        return dt.timedelta(hours=self.hours)


class ExceptionNote(models.Model):
    """What someone found or did, in the exception's own thread."""

    exception = models.ForeignKey(ExceptionRecord, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.author}: {self.text[:60]}"
