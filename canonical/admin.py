from django.contrib import admin

from canonical.models import CrossReference, Customer, Invoice, InvoiceLine, LegalEntity, Payment, Price, Product


@admin.register(LegalEntity)
class LegalEntityAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "currency", "country")


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("id", "display_name", "email", "country", "version", "updated_at")
    search_fields = ("display_name", "email")


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
