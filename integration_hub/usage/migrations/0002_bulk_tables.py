"""The bulk tables, by SQL because the ORM cannot declare them:

- ``usage_stage``: where a load writes (COPY on PostgreSQL, UNLOGGED: it is scratch
  space, rebuilt from the stored file after a crash); rows of a batch are deleted when
  its load commits.
- ``usage_event``: one row per event id ever loaded (the unique key) with its content
  digest, so a later duplicate or conflict is told apart set-based.
- ``usage_record``: the records, on PostgreSQL partitioned by month of ``occurred_at``
  (partitions are created on demand by the load, ``loading.partitions_ensure``).
"""

from django.db import migrations

COLUMNS = """
    event_id text NOT NULL, batch_id bigint NOT NULL, line integer NOT NULL,
    subscription text NOT NULL, metric text NOT NULL, quantity bigint NOT NULL,
    occurred_at {ts} NOT NULL, day date NOT NULL, period date NOT NULL"""

POSTGRES = [
    f"CREATE UNLOGGED TABLE usage_stage ({COLUMNS.format(ts='timestamptz')}, dimensions text NOT NULL, "
    "digest text NOT NULL)",
    "CREATE TABLE usage_event (event_id text PRIMARY KEY, digest text NOT NULL, batch_id bigint NOT NULL, "
    "line integer NOT NULL)",
    f"CREATE TABLE usage_record ({COLUMNS.format(ts='timestamptz')}, billing_period date, dimensions jsonb, "
    "matched boolean NOT NULL, PRIMARY KEY (event_id, occurred_at)) PARTITION BY RANGE (occurred_at)",
    "CREATE INDEX usage_record_billing ON usage_record (billing_period, subscription, metric)",
    "CREATE INDEX usage_record_batch ON usage_record (batch_id)",
    "CREATE INDEX usage_record_unmatched ON usage_record (subscription) WHERE NOT matched",
]
SQLITE = [
    f"CREATE TABLE usage_stage ({COLUMNS.format(ts='datetime')}, dimensions text NOT NULL, digest text NOT NULL)",
    "CREATE INDEX usage_stage_batch ON usage_stage (batch_id, line)",
    "CREATE TABLE usage_event (event_id text PRIMARY KEY, digest text NOT NULL, batch_id bigint NOT NULL, "
    "line integer NOT NULL)",
    f"CREATE TABLE usage_record ({COLUMNS.format(ts='datetime')}, billing_period date, dimensions text, "
    "matched bool NOT NULL, PRIMARY KEY (event_id))",
    "CREATE INDEX usage_record_billing ON usage_record (billing_period, subscription, metric)",
    "CREATE INDEX usage_record_batch ON usage_record (batch_id)",
    "CREATE INDEX usage_record_unmatched ON usage_record (subscription) WHERE NOT matched",
]
DROP = ["DROP TABLE IF EXISTS usage_record", "DROP TABLE IF EXISTS usage_event", "DROP TABLE IF EXISTS usage_stage"]


def create(apps, schema_editor):
    for statement in POSTGRES if schema_editor.connection.vendor == "postgresql" else SQLITE:
        schema_editor.execute(statement)


def drop(apps, schema_editor):
    for statement in DROP:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("usage", "0001_initial")]
    operations = [migrations.RunPython(create, drop)]
