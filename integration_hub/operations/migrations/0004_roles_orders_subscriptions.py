from django.db import migrations

from integration_hub.operations.roles import roles_sync


def roles_again(apps, schema_editor):
    """The role groups again, now that orders, subscriptions and amendments exist."""
    roles_sync(apps, schema_editor)


class Migration(migrations.Migration):

    dependencies = [
        ("operations", "0003_exception_sla_categories"),
        ("canonical", "0008_orders_subscriptions"),
    ]

    operations = [migrations.RunPython(roles_again, migrations.RunPython.noop)]
