"""Hot-path SQL of the runtime: on PostgreSQL a parent and its child row in one
statement (``insert_ignore_with_parent``), and transaction-level locks. The one-row
``insert_ignore`` lives in ``canonical.sql``, the lowest layer, so the canonical store
uses it too.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Model


def insert_ignore_with_parent(
    parent: type[Model], parent_values: dict[str, Any], unique: str,
    model: type[Model], values: dict[str, Any], link: str,
) -> tuple[Any, Any] | None:
    """PostgreSQL only: in one statement (so one round trip, and atomic on its own in
    autocommit mode), insert the ``parent`` row unless one with the same ``unique``
    value exists, then the ``model`` row with ``link`` pointing at whichever parent holds
    that value. Returns the new row's primary key and its ``link`` (the parent's), or
    None when nothing was inserted: either an equal ``model`` row exists, or the parent
    was committed by a concurrent transaction after this statement's snapshot (the
    statement waited for it but cannot see it) -- callers tell the two apart and, for the
    latter, insert again. ``values`` leaves out ``link``. The SELECT list relies on
    Django's default client-side binding, which sends typed literals (``'…'::jsonb``).
    """
    quote = connection.ops.quote_name
    parent_meta, meta = parent._meta, model._meta
    parent_fields = [parent_meta.get_field(name) for name in parent_values]
    fields = [meta.get_field(name) for name in values]
    link_column = meta.get_field(link).column
    parent_pk, parent_table = quote(parent_meta.pk.column), quote(parent_meta.db_table)
    unique_column = quote(parent_meta.get_field(unique).column)
    sql = (
        f"WITH new_parent AS (INSERT INTO {parent_table} "
        f"({', '.join(quote(field.column) for field in parent_fields)}) "
        f"VALUES ({', '.join(['%s'] * len(parent_fields))}) ON CONFLICT DO NOTHING RETURNING {parent_pk}), "
        f"the_parent AS (SELECT {parent_pk} FROM new_parent UNION ALL "
        f"SELECT {parent_pk} FROM {parent_table} WHERE {unique_column} = %s LIMIT 1) "
        f"INSERT INTO {quote(meta.db_table)} ({quote(link_column)}, "
        f"{', '.join(quote(field.column) for field in fields)}) "
        f"SELECT {parent_pk}, {', '.join(['%s'] * len(fields))} FROM the_parent "
        f"ON CONFLICT DO NOTHING RETURNING {quote(meta.pk.column)}, {quote(link_column)}"
    )
    params = [field.get_db_prep_save(parent_values[field.name], connection) for field in parent_fields]
    params.append(parent_meta.get_field(unique).get_db_prep_save(parent_values[unique], connection))
    params += [field.get_db_prep_save(values[field.name], connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return (meta.pk.to_python(row[0]), parent_meta.pk.to_python(row[1])) if row else None


def transaction_lock(key: str) -> None:
    """Hold a lock named ``key`` until the current transaction ends (PostgreSQL's
    transaction-level advisory lock). SQLite has one writer at a time already, so
    nothing is taken there."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        # hashtextextended: a stable 64-bit hash of the name, computed by the server.
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])
