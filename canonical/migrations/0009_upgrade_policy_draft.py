"""The upgrade path to posting policies: an installation that already has legal
entities but no posting policy version gets a **draft** v1 drafted from them — the
hub's old rule as data (each entity books its functional currency on the ERP's
default revenue account, 0 % tax posts without tax) — for finance to complete and
approve. It is not approved here: approving is a finance decision (the tax
mappings to the ERP's tax codes are finance's to add), and until it is approved new
invoices wait as policy exceptions, replayed afterwards (see
docs/posting-policies.md, "Upgrading"). Fresh installations (no entities yet) and
installations with any version are left alone."""

from decimal import Decimal

from django.db import migrations

NOTE = ("Drafted by the upgrade from the existing legal entities (the old rule: each entity books its "
        "functional currency). Add the tax mappings for your ERP's tax codes, dry-run, approve.")


def draft_from_entities(apps, schema_editor):
    LegalEntity = apps.get_model("canonical", "LegalEntity")
    Version = apps.get_model("canonical", "PostingPolicyVersion")
    Rule = apps.get_model("canonical", "PostingRule")
    TaxMapping = apps.get_model("canonical", "TaxMapping")
    if Version.objects.exists() or not LegalEntity.objects.exists():
        return
    version = Version.objects.create(number=1, status="draft", note=NOTE)
    for priority, entity in enumerate(LegalEntity.objects.order_by("code"), start=1):
        Rule.objects.create(version=version, priority=priority * 10, name=f"{entity.currency} → {entity.code}",
                            currency=entity.currency, legal_entity=entity, revenue_account="",
                            currency_treatment="functional_only")
    TaxMapping.objects.create(version=version, jurisdiction="*", rate=Decimal(0), tax_code="")


def remove_untouched_draft(apps, schema_editor):
    apps.get_model("canonical", "PostingPolicyVersion").objects.filter(number=1, status="draft", note=NOTE).delete()


class Migration(migrations.Migration):
    dependencies = [("canonical", "0008_exchange_rates")]

    operations = [migrations.RunPython(draft_from_entities, remove_untouched_draft)]
