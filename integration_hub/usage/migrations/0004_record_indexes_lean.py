"""Fewer indexes on ``usage_record``, so a load maintains less per record: the billing
index is on ``billing_period`` alone (aggregation and the checkpoint read a whole
billing period, then group), and the index on ``batch_id`` goes (held usage is recounted
from the unmatched rows, which have their own partial index)."""

from django.db import migrations

FORWARD = [
    "DROP INDEX IF EXISTS usage_record_billing",
    "DROP INDEX IF EXISTS usage_record_batch",
    "CREATE INDEX usage_record_billing ON usage_record (billing_period)",
]
BACKWARD = [
    "DROP INDEX IF EXISTS usage_record_billing",
    "CREATE INDEX usage_record_billing ON usage_record (billing_period, subscription, metric)",
    "CREATE INDEX usage_record_batch ON usage_record (batch_id)",
]


def forward(apps, schema_editor):
    for statement in FORWARD:
        schema_editor.execute(statement)


def backward(apps, schema_editor):
    for statement in BACKWARD:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("usage", "0003_schedules")]
    operations = [migrations.RunPython(forward, backward)]
