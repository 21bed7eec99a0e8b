"""Joins the two role migrations (the Policy approver; orders and subscriptions) and
syncs the role groups once more, so each role holds every permission both add."""

from django.db import migrations

from integration_hub.operations.roles import roles_sync


class Migration(migrations.Migration):

    dependencies = [
        ("operations", "0004_policy_approver"),
        ("operations", "0004_roles_orders_subscriptions"),
    ]

    operations = [migrations.RunPython(roles_sync, migrations.RunPython.noop)]
