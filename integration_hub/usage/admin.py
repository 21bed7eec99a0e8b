"""The admin: batches with live counts, an upload form, rejects as CSV, checkpoints with
their report and repair, subscriptions, periods (close on demand)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from integration_hub.usage import selectors, services
from integration_hub.usage.models import Checkpoint, UsageBatch, UsagePeriod, UsageSubscription


class UploadForm(forms.Form):
    file = forms.FileField(help_text="CSV with a header or JSON lines; gzip accepted")


@admin.register(UsageBatch)
class UsageBatchAdmin(admin.ModelAdmin):
    list_display = ("id", "filename", "source", "status", *UsageBatch.COUNT_FIELDS, "created_at", "rejects")
    list_filter = ("status", "source")
    readonly_fields = [f.name for f in UsageBatch._meta.fields]
    change_list_template = "admin/usage/usagebatch/change_list.html"

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="rejected rows")
    def rejects(self, batch: UsageBatch):
        if not batch.rejected:
            return "—"
        return format_html('<a href="/api/usage/batches/{}/rejects.csv">CSV ({})</a>', batch.pk, batch.rejected)

    def get_urls(self):
        return [path("upload/", self.admin_site.admin_view(self.upload), name="usage_usagebatch_upload"),
                *super().get_urls()]

    def upload(self, request):
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            batch = services.batch_receive(stream=upload.file, filename=upload.name, source=UsageBatch.Source.ADMIN)
            self.message_user(request, f"Batch #{batch.pk} received; the usage worker loads it.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:usage_usagebatch_changelist"))
        return TemplateResponse(request, "admin/usage/upload.html",
                                {**self.admin_site.each_context(request), "form": form, "title": "Upload usage"})


@admin.register(UsageSubscription)
class UsageSubscriptionAdmin(admin.ModelAdmin):
    list_display = ("subscription", "legal_entity", "billing_customer", "created_at")
    search_fields = ("subscription", "billing_customer")

    def save_model(self, request, obj, form, change):
        services.subscription_upsert(subscription=obj.subscription, legal_entity=obj.legal_entity,
                                     billing_customer=obj.billing_customer)


@admin.register(UsagePeriod)
class UsagePeriodAdmin(admin.ModelAdmin):
    list_display = ("period", "status", "closed_at")
    actions = ["close", "reconcile"]
    readonly_fields = ("period", "status", "closed_at", "transaction")

    @admin.action(description="Close and push to billing")
    def close(self, request, queryset):
        for period in queryset:
            services.period_close(period.period)

    @admin.action(description="Run a reconciliation checkpoint")
    def reconcile(self, request, queryset):
        for period in queryset:
            checkpoint = services.checkpoint_request(period.period, trigger="admin")
            self.message_user(request, f"{period}: checkpoint {checkpoint.pk} queued; the usage worker runs it "
                                       "(refresh the checkpoints list)")


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ("id", "period", "status", "trigger", "mismatch_count", "created_at", "csv")
    list_filter = ("status",)
    readonly_fields = ("period", "status", "trigger", "invoice_stages", "checked", "report", "differences",
                       "exception", "repaired_at", "error", "created_at")
    exclude = ("lines", "mismatches")
    actions = ["repair"]

    # A checkpoint is a report: it is made by running one (the period's action, the API
    # or the schedule) and changed only by its repair action.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="mismatches")
    def mismatch_count(self, checkpoint: Checkpoint) -> int:
        return len(checkpoint.mismatches)

    @admin.display(description="per legal entity × currency × metric (count / quantity)")
    def report(self, checkpoint: Checkpoint):
        stages = services.STAGES
        head = format_html_join("", "<th>{}</th>", ((name,) for name in ("entity", "currency", "metric", "keys",
                                                                          *stages)))
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}</tr>", (
            (line["legal_entity"], line["currency"], line["metric"], line["keys"],
             format_html_join("", "<td>{} / {}</td>", ((line[f"{s}_count"], line[f"{s}_quantity"]) for s in stages)))
            for line in selectors.checkpoint_detail(checkpoint)["lines"]))
        return format_html("<table><tr>{}</tr>{}</table>", head, rows)

    @admin.display(description="keys that differ")
    def differences(self, checkpoint: Checkpoint):
        if not checkpoint.mismatches:
            return "—"
        return format_html("<table><tr><th>customer</th><th>subscriptions</th><th>metric</th><th>entity</th>"
                           "<th>quantities</th><th>differs</th><th>action</th><th>not in the ERP</th></tr>{}</table>",
                           format_html_join("", "<tr>" + "<td>{}</td>" * 8 + "</tr>", (
                               (m.get("customer", ""), ", ".join(m.get("subscriptions", [])), m["metric"],
                                m["legal_entity"], " · ".join(f"{s} {m.get(s, '')}" for s in services.STAGES),
                                ", ".join(m.get("differs", [])), ", ".join(m.get("actions", [])),
                                ", ".join(f"{i['invoice']} ({i['status']})" for i in m.get("invoices", [])))
                               for m in checkpoint.mismatches[:500])))

    @admin.display(description="report")
    def csv(self, checkpoint: Checkpoint):
        return format_html('<a href="/api/reconciliations/{}/?as=csv">CSV</a>', checkpoint.pk)

    @admin.action(description="Repair: re-push what billing lacks, replay dead ERP postings")
    def repair(self, request, queryset):
        for checkpoint in queryset.filter(status=Checkpoint.Status.MISMATCH):
            repair = services.checkpoint_repair(checkpoint, user=request.user)
            self.message_user(request, f"checkpoint #{checkpoint.pk}: {len(repair.pushes)} repair push(es) planned, "
                                       f"{len(repair.replayed)} ERP posting(s) replayed")
