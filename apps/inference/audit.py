"""Writing audit rows (`Prediction`) on the hot path: one prepared statement, no ORM.

Used by synchronous predictions (apps/inference/services.py) and batch jobs
(apps/jobs/services/running.py).
"""

import functools
from typing import Any

import psycopg
from django.db import connection, transaction

from apps.accounts.models import User
from apps.accounts.services import quota_spend_statement
from apps.inference.models import Prediction


def insert_predictions(rows: list[dict[str, Any]]) -> None:
    """Write audit rows with one prepared INSERT.

    On the hot path of every prediction, the ORM's per-row model construction and
    SQL compilation cost more than the database round trip (about 1.5 ms against
    0.4 ms on PostgreSQL here). The statement is built once from the model's own
    fields, and each value goes through the field's own database preparation.
    """
    fields = _insert_fields()
    sql = _insert_sql(connection.vendor)
    params = [[f.get_db_prep_save(row.get(f.attname), connection) for f in fields] for row in rows]
    with connection.cursor() as cursor:
        if len(params) == 1:
            cursor.execute(sql, params[0])
        else:
            with transaction.atomic():
                cursor.executemany(sql, params)


def insert_predictions_spending_quota(user: User, amount: int, rows: list[dict[str, Any]]) -> bool:
    """PostgreSQL: spend `amount` of the user's quota and insert the rows in one statement.

    A data-modifying CTE: the INSERT takes its rows only if the UPDATE spent the
    quota, so the two happen together or not at all. False when nothing was spent
    (quota exceeded, or no usage row yet this month): the caller takes the slow path.
    """
    spend_sql, spend_params = quota_spend_statement(user=user, amount=amount)
    sql = f"WITH spent AS ({spend_sql} RETURNING 1) {_insert_select_sql(len(rows))}"
    fields = _insert_fields()
    params = list(spend_params)
    for row in rows:
        params.extend(f.get_db_prep_save(row.get(f.attname), connection) for f in fields)
    # A server-side-binding psycopg cursor, not Django's client-side one: the parameters
    # travel separately instead of being rendered into the SQL text in Python, and the
    # statement is prepared once per connection instead of planned on every request.
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.rowcount == len(rows)


@functools.cache
def _insert_select_sql(row_count: int) -> str:
    """INSERT … SELECT FROM (VALUES …), spent — built once per row count (a hot path)."""
    fields = _insert_fields()
    casts = ", ".join(f"CAST(%s AS {f.db_type(connection)})" for f in fields)
    values = ", ".join([f"({casts})"] * row_count)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(Prediction._meta.db_table)
    return f"INSERT INTO {table} ({columns}) SELECT v.* FROM (VALUES {values}) AS v, spent"  # noqa: S608


@functools.cache
def _insert_fields() -> tuple:
    return tuple(f for f in Prediction._meta.concrete_fields if not f.primary_key)


@functools.cache
def _insert_sql(vendor: str) -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in _insert_fields())
    placeholders = ", ".join(["%s"] * len(_insert_fields()))
    return f"INSERT INTO {quote(Prediction._meta.db_table)} ({columns}) VALUES ({placeholders})"  # noqa: S608 (names from the model, values bound)
