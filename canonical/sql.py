"""Single-statement inserts for the hot paths: INSERT … ON CONFLICT DO NOTHING
RETURNING, on PostgreSQL and on SQLite (3.35+) alike.

``get_or_create`` costs a SELECT, a SAVEPOINT, an INSERT and a RELEASE; at webhook
rates those round trips are most of a request's time. A conflict here raises
nothing, so the surrounding transaction needs no savepoint to survive it.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Model


def insert_ignore(model: type[Model], values: dict[str, Any]) -> Any | None:
    """Insert one row; return its primary key, or None if a unique constraint already
    holds an equal row (nothing is written then)."""
    meta = model._meta
    fields = [meta.get_field(name) for name in values]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    params = [field.get_db_prep_save(values[field.name], connection) for field in fields]
    sql = (
        f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({columns}) VALUES ({placeholders}) "
        f"ON CONFLICT DO NOTHING RETURNING {connection.ops.quote_name(meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return meta.pk.to_python(row[0]) if row else None
