from __future__ import annotations

from typing import Any

from django.db import models

from connectors import secrets


class Connection(models.Model):
    """One configured external system: which connector speaks to it, and how.

    ``name`` is the connection's identity: the ``system`` of every cross-reference
    into it, of every canonical record read from it and of every inbox event it
    sent. It is fixed once the connection exists; any number of connections may
    share a vendor and a role.
    Credentials are stored encrypted and never shown back in full.
    """

    class Role(models.TextChoices):
        BILLING = "billing"
        ERP = "erp"
        CRM = "crm"
        PRODUCT = "product"
        RATES = "rates"

    name = models.SlugField(max_length=50, unique=True)
    vendor = models.CharField(max_length=50, help_text="Registered connector name, e.g. 'tryton'")
    role = models.CharField(max_length=20, choices=Role.choices)
    is_active = models.BooleanField(default=True)
    config = models.JSONField(default=dict, blank=True, help_text="Non-secret settings (URL, database, ...)")
    encrypted_credentials = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.vendor})"

    def clean(self) -> None:
        """The outbound URL policy on every URL the config names (admin forms call this)."""
        from django.core.exceptions import ValidationError

        from connectors.url_policy import UrlRefused, connection_config_validate

        try:
            connection_config_validate(self.vendor, self.config)
        except UrlRefused as exc:
            raise ValidationError({"config": str(exc)}) from None

    @property
    def credentials(self) -> dict[str, Any]:
        return secrets.decrypt(self.encrypted_credentials)

    def set_credentials(self, values: dict[str, Any]) -> None:
        self.encrypted_credentials = secrets.encrypt(values)

    def webhook_secrets(self) -> list[str]:
        value = self.credentials.get("webhook_secrets", [])
        return [value] if isinstance(value, str) else list(value)
