"""Usage aggregation's records. The high-volume tables (``usage_stage``, ``usage_event``,
``usage_record``) are created by SQL in migration 0002 and written only set-based
(``loading.py``); ``UsageRecord`` maps the record table read-only for the admin."""

from __future__ import annotations

from django.db import models


class UsageSubscription(models.Model):
    """A subscription the hub knows, so its usage can be billed: who the billing system
    bills (``billing_customer``, the Stripe customer id) and which legal entity books it.
    Usage for a subscription not here is held as unmatched until it arrives."""

    subscription = models.CharField(max_length=255, unique=True, help_text="The product platform's id")
    legal_entity = models.ForeignKey("canonical.LegalEntity", on_delete=models.PROTECT, related_name="+")
    billing_customer = models.CharField(max_length=255, help_text="The billing system's customer id")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.subscription


class UsageBatch(models.Model):
    class Status(models.TextChoices):
        RECEIVED = "received"
        LOADING = "loading"
        LOADED = "loaded"
        FAILED = "failed"

    class Source(models.TextChoices):
        API = "api"
        ADMIN = "admin"
        DROP_FOLDER = "drop_folder", "Drop folder"
        SHELL = "shell"
        PULL = "pull", "Product platform pull"

    transaction = models.ForeignKey("runtime.BusinessTransaction", on_delete=models.PROTECT, related_name="+")
    source = models.CharField(max_length=20, choices=Source.choices)
    filename = models.CharField(max_length=255, blank=True)
    file_path = models.CharField(max_length=500, blank=True, help_text="The stored upload the worker reads")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RECEIVED)
    read = models.PositiveBigIntegerField(default=0, help_text="Rows read (records and rejected rows)")
    loaded = models.PositiveBigIntegerField(default=0)
    duplicates = models.PositiveBigIntegerField(default=0, help_text="Same id, same content: ignored")
    conflicts = models.PositiveBigIntegerField(default=0, help_text="Same id, other content: an exception")
    unmatched = models.PositiveBigIntegerField(default=0, help_text="Loaded for a subscription not known yet")
    rejected = models.PositiveBigIntegerField(default=0)
    late = models.PositiveBigIntegerField(default=0, help_text="Loaded for a period already closed")
    control_totals = models.JSONField(default=list, blank=True, help_text="The file's, per metric")
    control_result = models.JSONField(default=list, blank=True, help_text="Per metric: expected vs found")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "usage batches"

    def __str__(self) -> str:
        return f"usage batch #{self.pk} ({self.status})"

    COUNT_FIELDS = ("read", "loaded", "duplicates", "conflicts", "unmatched", "rejected", "late")


class UsageReject(models.Model):
    batch = models.ForeignKey(UsageBatch, on_delete=models.CASCADE, related_name="rejects")
    line = models.PositiveIntegerField()
    reason = models.CharField(max_length=40)
    event_id = models.CharField(max_length=255, blank=True)
    raw = models.TextField()

    class Meta:
        ordering = ["batch", "line"]
        indexes = [models.Index(fields=["batch", "line"])]


class UsageConflict(models.Model):
    """A later record with an id already loaded, whose content differs: kept here, never
    loaded over the first one."""

    batch = models.ForeignKey(UsageBatch, on_delete=models.CASCADE, related_name="conflict_rows")
    line = models.PositiveIntegerField()
    event_id = models.CharField(max_length=255)
    first_batch_id = models.BigIntegerField()
    first_line = models.PositiveIntegerField()
    subscription = models.CharField(max_length=255)
    metric = models.CharField(max_length=100)
    quantity = models.BigIntegerField(help_text="Millionths")
    occurred_at = models.DateTimeField()
    dimensions = models.TextField(blank=True)

    class Meta:
        db_table = "usage_conflict"
        ordering = ["batch", "line"]


class UsageRecord(models.Model):
    """Read-only view of the record table (partitioned by month on PostgreSQL)."""

    event_id = models.CharField(max_length=255, primary_key=True)
    batch_id = models.BigIntegerField()
    line = models.PositiveIntegerField()
    subscription = models.CharField(max_length=255)
    metric = models.CharField(max_length=100)
    quantity = models.BigIntegerField(help_text="Millionths")
    occurred_at = models.DateTimeField()
    day = models.DateField()
    period = models.DateField()
    billing_period = models.DateField(null=True, help_text="Empty: late usage held for a person")
    dimensions = models.JSONField(null=True)
    matched = models.BooleanField()

    class Meta:
        managed = False
        db_table = "usage_record"


class UsagePeriod(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        CLOSED = "closed"

    period = models.DateField(unique=True, help_text="First day of the calendar month (UTC)")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    transaction = models.ForeignKey("runtime.BusinessTransaction", on_delete=models.PROTECT, related_name="+")
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-period"]

    def __str__(self) -> str:
        return f"{self.period:%Y-%m} ({self.status})"


class UsageAggregate(models.Model):
    period = models.DateField()
    subscription = models.CharField(max_length=255)
    metric = models.CharField(max_length=100)
    quantity = models.BigIntegerField(help_text="Millionths")
    records = models.PositiveBigIntegerField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "usage_aggregate"
        constraints = [models.UniqueConstraint(fields=["period", "subscription", "metric"],
                                               name="usage_aggregate_unique")]


class UsageDaily(models.Model):
    day = models.DateField()
    subscription = models.CharField(max_length=255)
    metric = models.CharField(max_length=100)
    quantity = models.BigIntegerField(help_text="Millionths")
    records = models.PositiveBigIntegerField()

    class Meta:
        db_table = "usage_daily"
        constraints = [models.UniqueConstraint(fields=["day", "subscription", "metric"], name="usage_daily_unique")]


class UsagePush(models.Model):
    """Up to 100 meter events sent in one delivery (one v2 stream request)."""

    period = models.ForeignKey(UsagePeriod, on_delete=models.PROTECT, related_name="pushes")
    connection = models.ForeignKey("connectors.Connection", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=20, default="period", help_text="period (at close) or repair")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)


class UsageMeterEvent(models.Model):
    aggregate = models.ForeignKey(UsageAggregate, on_delete=models.PROTECT, related_name="meter_events")
    push = models.ForeignKey(UsagePush, on_delete=models.PROTECT, related_name="events")
    identifier = models.CharField(max_length=100, unique=True, help_text="The billing system's idempotency key")
    quantity = models.BigIntegerField(help_text="Millionths")
    timestamp = models.DateTimeField()


class Checkpoint(models.Model):
    """One reconciliation of a period: per legal entity × currency × metric, the counts and
    sums each stage holds, and the keys (billing customer × metric, with its subscriptions
    and invoices) that do not agree."""

    class Status(models.TextChoices):
        RUNNING = "running", "queued or running"
        BALANCED = "balanced"
        MISMATCH = "mismatch"
        RESOLVED = "resolved", "mismatch, balanced by a later checkpoint"
        FAILED = "failed", "could not run (see its error)"

    period = models.ForeignKey(UsagePeriod, on_delete=models.PROTECT, related_name="checkpoints")
    status = models.CharField(max_length=20, choices=Status.choices)
    trigger = models.CharField(max_length=20, default="api")
    lines = models.JSONField(default=list)
    mismatches = models.JSONField(default=list)
    checked = models.JSONField(default=list, help_text="The stages compared (the invoice stages once they are due)")
    repaired_at = models.DateTimeField(null=True, blank=True, help_text="When its repair ran (once)")
    invoice_stages = models.BooleanField(null=True, blank=True, help_text="Asked for: compare the invoice stages "
                                         "(empty: once the period's invoices are due)")
    error = models.TextField(blank=True, help_text="Why it could not run (billing unreachable, …)")
    exception = models.ForeignKey("runtime.ExceptionRecord", null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"checkpoint #{self.pk} of {self.period.period:%Y-%m} ({self.get_status_display()})"
