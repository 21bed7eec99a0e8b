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
            )
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
        IN_FLIGHT = "in_flight"
        POSTED = "posted"
        DEAD = "dead"

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
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts in the current retry budget")
    next_attempt_at = models.DateTimeField()
    enqueued_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    external_id = models.CharField(max_length=255, blank=True)
    external_number = models.CharField(max_length=255, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], name="delivery_pending", condition=models.Q(status="pending")
            ),
            models.Index(fields=["claimed_at"], name="delivery_in_flight", condition=models.Q(status="in_flight")),
            models.Index(fields=["object_type", "object_id"]),
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

    class Meta:
        ordering = ["delivery", "number"]


class ExceptionRecord(models.Model):
    """Work only a person can finish: a dead delivery or an event that failed mapping.

    It carries what is needed to fix the cause and replay.
    """

    class Team(models.TextChoices):
        IT_OPERATIONS = "it_operations", "IT operations"
        FINANCE = "finance", "Finance operations"
        SALES_OPERATIONS = "sales_operations", "Sales operations"

    class Category(models.TextChoices):
        MAPPING = "mapping", "Payload could not be mapped"
        POLICY = "policy", "No posting policy applies"
        CONFIGURATION = "configuration", "Connection or target needs configuration"
        REJECTED = "rejected", "Target rejected the document"
        RETRIES_EXHAUSTED = "retries_exhausted", "Retry budget exhausted"
        PROCESSING = "processing", "Processing kept failing"

    class Status(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"

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
    resolution = models.TextField(blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "owner_team"])]

    def __str__(self) -> str:
        return f"[{self.get_owner_team_display()}] {self.summary}"
