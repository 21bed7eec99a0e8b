import json

from django import forms
from django.contrib import admin
from django.utils.html import format_html_join

from connectors import registry, secrets
from connectors.models import Connection


class ConnectionForm(forms.ModelForm):
    """Credentials are write-only: leave the field empty to keep the stored ones."""

    new_credentials = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off"}),
        help_text='JSON object, e.g. {"login": "hub", "password": "…"}. Stored encrypted; never shown again.',
    )

    class Meta:
        model = Connection
        fields = ("name", "vendor", "role", "is_active", "config")

    def clean_vendor(self):
        vendor = self.cleaned_data["vendor"]
        if not registry.is_known(vendor):
            raise forms.ValidationError(f"no connector is registered as {vendor!r}")
        return vendor

    def clean_new_credentials(self):
        raw = self.cleaned_data["new_credentials"].strip()
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("must be a JSON object")
        return value

    def save(self, commit=True):
        connection = super().save(commit=False)
        if self.cleaned_data.get("new_credentials") is not None:
            connection.set_credentials(self.cleaned_data["new_credentials"])
        if commit:
            connection.save()
        return connection


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = ConnectionForm
    list_display = ("name", "vendor", "role", "is_active", "updated_at")
    list_filter = ("role", "vendor", "is_active")
    readonly_fields = ("stored_credentials",)

    def get_readonly_fields(self, request, obj=None):
        # The name is the connection's identity: every cross-reference, inbox row and
        # canonical source carries it, so it is fixed once the connection exists.
        return (*self.readonly_fields, "name", "vendor") if obj is not None else self.readonly_fields

    @admin.display(description="stored credentials")
    def stored_credentials(self, obj):
        if not obj.encrypted_credentials:
            return "none"
        return format_html_join(", ", "{}: {}", ((k, secrets.mask(v)) for k, v in sorted(obj.credentials.items())))
