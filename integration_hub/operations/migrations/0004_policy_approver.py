"""Posting-policy approval is a real permission held by a role: the *Policy approver*
group holds ``canonical.approve_postingpolicyversion`` (finance edits drafts, an
approver approves them). The console's never-checked ``operations.approve_release``
permission is removed (catalog versions have ``canonical.approve_catalog``, policies
the permission above)."""

from django.db import migrations

from integration_hub.operations.roles import roles_sync


def sync(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Permission.objects.filter(content_type__app_label="operations", codename="approve_release").delete()
    roles_sync(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("operations", "0003_exception_sla_categories"),
        ("canonical", "0009_upgrade_policy_draft"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="console",
            options={"default_permissions": (), "managed": False, "permissions": [
                ("replay_exception", "Can replay one exception (its dead delivery or failed event)"),
                ("bulk_replay_exception", "Can replay many exceptions at once"),
                ("edit_and_replay_exception", "Can correct what an exception is about and replay it"),
                ("work_exception", "Can acknowledge, assign, annotate, resolve and dismiss exceptions"),
                ("decide_conflict", "Can accept or reject a system-of-record conflict"),
                ("merge_duplicate", "Can merge or release a possible duplicate customer"),
                ("trigger_sync", "Can start a scheduled pull by hand"),
                ("view_all_teams", "Can see every team's exceptions and transactions"),
                ("view_console", "Can see the dashboard, the inventory and the metrics"),
            ]},
        ),
        migrations.RunPython(sync, migrations.RunPython.noop),
    ]
