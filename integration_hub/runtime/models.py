"""Reliability state: the inbox, the outbox (deliveries and their attempts), the
exception records, and the business transaction that ties them together.

The database, not the broker, is the source of truth: every message a task carries
is an id into these tables, and a sweeper re-enqueues what the broker lost.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class BusinessTransaction(models.Model):
    """Everything that happened about one business object ("stripe invoice in_123"):
    its events, canonical record, deliveries, attempts and exceptions."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=50, help_text="Kind of business object, e.g. invoice")
    subject = models.CharField(max_length=255, unique=True, help_text="e.g. stripe:invoice:in_123")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["kind", "created_at"], name="transaction_kind_created")]  # inventory

    def __str__(self) -> str:
        return f"{self.subject} [{self.id}]"


class InboundEvent(models.Model):
    """The inbox: one row per accepted vendor event, committed before we answer 2xx."""

    class Status(models.TextChoices):
        RECEIVED = "received"
        PROCESSED = "processed"
        IGNORED = "ignored"
        FAILED = "failed"

    transaction = models.ForeignKey(BusinessTransaction, on_delete=models.PROTECT, related_name="events")
    source = models.CharField(max_length=50)
    external_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=100)
    payload = models.JSONField()
    occurred_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveIntegerField(default=0)
    note = models.TextField(blank=True, help_text="Why it was ignored or failed")
    received_at = models.DateTimeField(auto_now_add=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="inbound_unique_per_source")
        ]
        indexes = [
            # The sweeper's query: only unfinished rows, so it stays small as history grows.
            models.Index(
                fields=["enqueued_at"], name="inbound_unfinished", condition=models.Q(status="received")
            ),
            models.Index(fields=["received_at"], name="inbound_received"),  # 24 h throughput
        ]
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.source}:{self.event_type}:{self.external_id}"


class Delivery(models.Model):
    """The outbox: one intended effect on one target system, at most once in effect.

    ``idempotency_key`` is unique, so planning the same effect twice yields this row
    again; the connector uses the key (or a lookup by reference) so a retry after an
    unknown outcome never creates a second document.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        HELD = "held", "held (by the target's governor)"
        IN_FLIGHT = "in_flight"
        POSTED = "posted"
        DEAD = "dead"

    # Waiting for an attempt: due when next_attempt_at has passed.
    WAITING = (Status.PENDING, Status.HELD)

    transaction = models.ForeignKey(BusinessTransaction, on_delete=models.PROTECT, related_name="deliveries")
    connection = models.ForeignKey("connectors.Connection", on_delete=models.PROTECT, related_name="deliveries")
    action = models.CharField(max_length=50, help_text="e.g. invoice.post")
    object_type = models.CharField(max_length=50)
    object_id = models.BigIntegerField()
    idempotency_key = models.CharField(max_length=255, unique=True)
    after = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="dependents",
        help_text="Not attempted before this delivery is posted (e.g. a payment after its invoice)",
    )
    serial_key = models.CharField(
        max_length=100, blank=True,
        help_text="Deliveries sharing this key never run at once (e.g. every ERP effect on one invoice)",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts in the current retry budget")
    next_attempt_at = models.DateTimeField()
    enqueued_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    hold_reason = models.CharField(
        max_length=200, blank=True, help_text="Why the governor holds it (circuit open, maintenance, …)"
    )
    external_id = models.CharField(max_length=255, blank=True)
    external_number = models.CharField(max_length=255, blank=True)
    last_error = models.TextField(blank=True)
    lookup_first = models.BooleanField(
        default=False, help_text="An earlier attempt's outcome is unknown: look the effect up before sending"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], name="delivery_waiting", condition=models.Q(status__in=["pending", "held"])
            ),
            models.Index(fields=["claimed_at"], name="delivery_in_flight", condition=models.Q(status="in_flight")),
            models.Index(fields=["object_type", "object_id"]),
            models.Index(fields=["serial_key"], name="delivery_serial",
                         condition=models.Q(status__in=["pending", "held", "in_flight"]) & ~models.Q(serial_key="")),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id} → {self.connection_id} ({self.status})"


class DeliveryAttempt(models.Model):
    """One try of a delivery: every outbound call leaves a row."""

    class Outcome(models.TextChoices):
        POSTED = "posted"
        RETRYABLE = "retryable"
        RATE_LIMITED = "rate_limited"
        PERMANENT = "permanent"
        ERROR = "error"
        LOST = "lost"

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    error_class = models.CharField(max_length=100, blank=True)
    message = models.TextField(blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome_unknown = models.BooleanField(
        default=False, help_text="The call may have had its effect (a timeout after sending, a lost worker)"
    )

    class Meta:
        ordering = ["delivery", "number"]
        # Latency, retry rate and throughput over the last 24 hours (dashboard).
        indexes = [models.Index(fields=["started_at"], name="attempt_started")]


class ExceptionRecord(models.Model):
    """Work only a person can finish: a dead delivery or an event that failed mapping.

    It carries what is needed to fix the cause and replay.
    """

    class Team(models.TextChoices):
        IT_OPERATIONS = "it_operations", "IT operations"
        FINANCE = "finance", "Finance operations"
        SALES_OPERATIONS = "sales_operations", "Sales operations"
        PRODUCT_OPERATIONS = "product_operations", "Product operations"

    class Category(models.TextChoices):
        MAPPING = "mapping", "Payload could not be mapped"
        POLICY = "policy", "No posting policy applies"
        CONFIGURATION = "configuration", "Connection or target needs configuration"
        REJECTED = "rejected", "Target rejected the document"
        RETRIES_EXHAUSTED = "retries_exhausted", "Retry budget exhausted"
        PROCESSING = "processing", "Processing kept failing"
        CONFLICT = "conflict", "Same id arrived with other content"
        LATE_DATA = "late_data", "Data for a period already closed"
        RECONCILIATION = "reconciliation", "A reconciliation checkpoint does not balance"
        ALERT = "alert", "Change alert (needs a look)"
        DRIFT = "drift", "Target out of step with the hub"

    class Status(models.TextChoices):
        OPEN = "open"
        ACKNOWLEDGED = "acknowledged"
        RESOLVED = "resolved"
        DISMISSED = "dismissed"

    # Someone still has to act: it can be replayed, corrected, resolved or dismissed.
    ACTIVE = (Status.OPEN, Status.ACKNOWLEDGED)

    transaction = models.ForeignKey(BusinessTransaction, on_delete=models.PROTECT, related_name="exceptions")
    delivery = models.ForeignKey(Delivery, null=True, blank=True, on_delete=models.PROTECT, related_name="exceptions")
    inbound_event = models.ForeignKey(
        InboundEvent, null=True, blank=True, on_delete=models.PROTECT, related_name="exceptions"
    )
    owner_team = models.CharField(max_length=30, choices=Team.choices)
    category = models.CharField(max_length=30, choices=Category.choices)
    summary = models.CharField(max_length=500)
    detail = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    resolution = models.TextField(blank=True, help_text="How it was resolved, or why it was dismissed")
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    resolved_at = models.DateTimeField(null=True, blank=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_exceptions"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True, help_text="When the owning team was e-mailed about it")
    breach_notified_at = models.DateTimeField(
        null=True, blank=True, help_text="When the owning team was e-mailed that it passed its SLA"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "owner_team"]),
            # The dashboard's and the notifier's queries: only the rows someone must act on.
            models.Index(
                fields=["owner_team", "category", "created_at"], name="exception_active",
                condition=models.Q(status__in=["open", "acknowledged"]),
            ),
        ]

    def __str__(self) -> str:
        return f"[{self.get_owner_team_display()}] {self.summary}"


class AdmissionPolicy(models.Model):
    """How much a target system can take: the governor consults it before every call.

    Empty limits mean unlimited. Edited in the admin; a connection without a policy
    gets the defaults (circuit breaker only).
    """

    connection = models.OneToOneField("connectors.Connection", on_delete=models.CASCADE, related_name="admission")
    rate_per_second = models.FloatField(null=True, blank=True, help_text="Token bucket refill rate")
    burst = models.PositiveIntegerField(default=1, help_text="Token bucket size")
    max_concurrency = models.PositiveIntegerField(null=True, blank=True, help_text="Parallel calls allowed")
    failure_threshold = models.PositiveIntegerField(default=5, help_text="Consecutive failures that open the circuit")
    open_seconds = models.PositiveIntegerField(default=30, help_text="How long an open circuit waits before a probe")

    def __str__(self) -> str:
        return f"admission policy of {self.connection}"


class MaintenanceWindow(models.Model):
    """A period when a target must not be called. Deliveries due inside it are held
    without spending retry budget and drain, spread out, when it ends."""

    connection = models.ForeignKey("connectors.Connection", on_delete=models.CASCADE, related_name="maintenance_windows")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["starts_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(ends_at__gt=models.F("starts_at")), name="window_ends_after_start")
        ]

    def __str__(self) -> str:
        return f"{self.connection} down {self.starts_at:%Y-%m-%d %H:%M}–{self.ends_at:%H:%M} {self.reason}".strip()


class AuditEntry(models.Model):
    """Who did what to which record, when and why: replays, edits, resolutions."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=50)
    object_type = models.CharField(max_length=50)
    object_id = models.CharField(max_length=64)
    reason = models.TextField(blank=True)
    changes = models.JSONField(default=dict, blank=True, help_text="Before/after of edited fields")
    transaction = models.ForeignKey(BusinessTransaction, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.object_type} {self.object_id}"


class GovernorState(models.Model):
    """The governor's state for one connection, when no Redis is configured (the
    zero-setup default). With Redis the same state lives in a Redis key."""

    connection = models.OneToOneField("connectors.Connection", on_delete=models.CASCADE, related_name="+")
    state = models.JSONField(default=dict)
