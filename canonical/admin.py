from django.contrib import admin

from canonical.models import (
    CrossReference,
    Customer,
    CustomerAlias,
    CustomerConfirmation,
    Invoice,
    InvoiceLine,
    LegalEntity,
    Payment,
    Price,
    Product,
    SystemOfRecord,
)


@admin.register(LegalEntity)
class LegalEntityAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "currency", "country")


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("id", "display_name", "status", "country", "domain", "parent", "version", "updated_at")
    list_filter = ("status", "country")
    search_fields = ("display_name", "email", "domain")
    readonly_fields = ("name_key", "domain_key", "tax_key", "version", "transaction_id", "merged_into")


@admin.register(SystemOfRecord)
class SystemOfRecordAdmin(admin.ModelAdmin):
    """Which system owns which field group: edit an owner here, no deploy needed."""

    list_display = ("entity", "field_group", "owner_role", "note")
    list_editable = ("owner_role",)
    list_filter = ("entity", "owner_role")


@admin.register(CustomerAlias)
class CustomerAliasAdmin(admin.ModelAdmin):
    list_display = ("system", "external_id", "customer", "merged_from", "created_at")
    search_fields = ("external_id",)


@admin.register(CustomerConfirmation)
class CustomerConfirmationAdmin(admin.ModelAdmin):
    list_display = ("customer", "version", "references", "confirmed_at", "transaction_id")
    readonly_fields = ("customer", "version", "references", "confirmed_at", "transaction_id")


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0


class PaymentInline(admin.TabularInline):
    model = Payment
    extra = 0


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ("source_id", "number", "customer", "legal_entity", "currency", "total", "status", "issued_on")
    list_filter = ("status", "currency", "legal_entity")
    search_fields = ("source_id", "number", "customer__display_name")
    inlines = [InvoiceLineInline, PaymentInline]
    readonly_fields = ("source_system", "source_id", "version", "transaction_id")


@admin.register(CrossReference)
class CrossReferenceAdmin(admin.ModelAdmin):
    list_display = ("object_type", "canonical_id", "system", "external_id", "external_number", "created_at")
    list_filter = ("system", "object_type")
    search_fields = ("external_id", "external_number")


admin.site.register(Product)
admin.site.register(Price)
