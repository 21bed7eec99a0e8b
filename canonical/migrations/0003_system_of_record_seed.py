"""Seed the system-of-record rules for customers (editable afterwards in the admin).

CRM owns name, hierarchy and addresses (and the commercial currency and contact);
the ERP owns credit terms and tax registration. Billing owns no field group: its
own customer id is a cross-reference, not master data.
"""

from django.db import migrations

RULES = [
    ("name", "crm", "Account name and web domain"),
    ("contact", "crm", "Contact e-mail"),
    ("hierarchy", "crm", "Parent account"),
    ("addresses", "crm", "Billing address and country"),
    ("currency", "crm", "Commercial currency"),
    ("tax_registration", "erp", "Tax ids"),
    ("credit_terms", "erp", "Payment terms and credit limit"),
]


def seed(apps, schema_editor):
    SystemOfRecord = apps.get_model("canonical", "SystemOfRecord")
    for group, owner, note in RULES:
        # Only create: an owner changed in the admin must survive a re-run.
        SystemOfRecord.objects.get_or_create(
            entity="customer", field_group=group, defaults={"owner_role": owner, "note": note}
        )


def unseed(apps, schema_editor):
    apps.get_model("canonical", "SystemOfRecord").objects.filter(entity="customer").delete()


class Migration(migrations.Migration):
    dependencies = [("canonical", "0002_customer_mastering")]

    operations = [migrations.RunPython(seed, unseed)]
