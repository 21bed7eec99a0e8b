"""Every reference names a connection, not a vendor.

Before, inbound references (cross-references, canonical sources, inbox sources)
used the vendor name and outbound bindings the connection name; the two only
agreed because every connection was named after its vendor. For each vendor with
exactly one connection whose name differs, rewrite the vendor-named rows to that
connection's name. A vendor with several connections is left alone and reported:
which connection an old row came from cannot be known.
"""

from django.db import migrations

# (app, model, field) holding a system name; parent_ref holds "system:external id".
SYSTEM_FIELDS = [
    ("canonical", "CrossReference", "system"),
    ("canonical", "CustomerAlias", "system"),
    ("canonical", "FieldConflict", "source_system"),
    ("canonical", "Invoice", "source_system"),
    ("canonical", "Payment", "source_system"),
    ("runtime", "InboundEvent", "source"),
]


def _renames(apps) -> dict[str, str]:
    Connection = apps.get_model("connectors", "Connection")
    by_vendor: dict[str, list[str]] = {}
    for name, vendor in Connection.objects.values_list("name", "vendor"):
        by_vendor.setdefault(vendor, []).append(name)
    renames = {}
    for vendor, names in by_vendor.items():
        if vendor in names:
            continue  # a connection carries the vendor's name: its rows are right already
        if len(names) == 1:
            renames[vendor] = names[0]
        else:
            print(f"\n  references of {vendor} left as they are: several connections ({', '.join(names)})")
    return renames


def forwards(apps, schema_editor):
    renames = _renames(apps)
    for vendor, name in renames.items():
        for app, model, field in SYSTEM_FIELDS:
            apps.get_model(app, model).objects.filter(**{field: vendor}).update(**{field: name})
        Customer = apps.get_model("canonical", "Customer")
        for customer in Customer.objects.filter(parent_ref__startswith=f"{vendor}:"):
            customer.parent_ref = f"{name}:{customer.parent_ref.partition(':')[2]}"
            customer.save(update_fields=["parent_ref"])


class Migration(migrations.Migration):
    dependencies = [
        ("runtime", "0004_outcome_unknown"),
        ("canonical", "0004_legal_entity_connections"),
        ("connectors", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
