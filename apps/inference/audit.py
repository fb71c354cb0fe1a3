"""The pipeline's last step: one audit row (`Prediction`) per input, whichever door it came
in by, written by one sink. On the hot path: one prepared statement, no ORM.

`rows` builds the rows from the pipeline's outcomes; `sink.write` stores them (spending
the caller's quota with them when asked): in the request's own database round trip
(AUDIT_MODE=durable, `DatabaseSink`), or appended to a Redis stream that
`manage.py auditwriter` copies into PostgreSQL in batches (AUDIT_MODE=stream, ADR 0030).
A row is a dict of Prediction's attribute names: whatever the model has, both sinks carry.
"""

import functools
import json
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import connection, transaction
from django.utils import timezone
from rest_framework import exceptions as drf_exceptions

from apps.accounts.credentials import Credential, recorded_ids
from apps.accounts.models import User
from apps.accounts.services.quota import QuotaExceeded, quota_consume, quota_spend_statement
from apps.auditstream.mode import stream_enabled
from apps.auditstream.sink import StreamSink
from apps.core.exception_handler import describe_error
from apps.inference.models import Prediction
from apps.inference.pipeline import Outcome
from apps.registry.models import ModelVersion


@dataclass(frozen=True)
class Context:
    """Who asked, through which door, for which version: the same on every row of a request."""

    user_id: int
    api_key_id: int | None
    version: ModelVersion
    alias: str
    source: str
    request_id: str
    client_address: str
    oauth_application_id: int | None = None
    route: str = ""  # 'primary' or 'canary' under a rollout (apps/rollouts)

    @classmethod
    def of(
        cls,
        *,
        user: User,
        api_key: Credential | None,
        version: ModelVersion,
        alias: str,
        source: str,
        request_id: str,
        client_address: str,
        route: str = "",
    ) -> "Context":
        """`api_key` is the request's narrowing credential: an API key or an OAuth token."""
        ids = recorded_ids(api_key)
        return cls(
            user.pk,
            ids["api_key_id"],
            version,
            alias,
            source,
            request_id,
            client_address,
            ids["oauth_application_id"],
            route,
        )


def rows(
    context: Context,
    outcomes: list[Outcome],
    *,
    started: float,
    error: Exception | None = None,
) -> list[dict[str, Any]]:
    """One row per outcome. `error`, when given, failed the request as a whole: every row
    records it; otherwise each row records its own input's success or error."""
    latency = round((time.perf_counter() - started) * 1000, 3)
    shared = {
        "created_at": timezone.now(),
        "user_id": context.user_id,
        "api_key_id": context.api_key_id,
        "oauth_application_id": context.oauth_application_id,
        "model_version_id": context.version.pk,
        "model_name": context.version.model.name,
        "version_number": context.version.number,
        "alias": context.alias,
        "route": context.route,
        "source": context.source,
        "latency_ms": latency,
        "request_id": context.request_id,
        "client_address": context.client_address,
    }
    request_error = error_code_and_message(error) if error is not None else None
    made = []
    for outcome in outcomes:
        failure = request_error or (error_code_and_message(outcome.error) if outcome.error else None)
        made.append(
            {
                **shared,
                "input_sha256": outcome.digest,
                "input_meta": outcome.meta,
                "output": {} if failure else outcome.audit_output,
                "status": Prediction.Status.FAILED if failure else Prediction.Status.SUCCEEDED,
                "error_code": failure[0] if failure else "",
                "error_message": failure[1][:1000] if failure else "",
            }
        )
    return made


def error_code_and_message(exc: Exception) -> tuple[str, str]:
    """The code and message an audit row keeps, as the error body shows them."""
    if isinstance(exc, QuotaExceeded):
        return exc.code, "Monthly prediction quota spent."
    described = describe_error(exc)
    if described is None:
        return "internal_error", "An internal error occurred."
    code, message = described
    if isinstance(exc, drf_exceptions.ValidationError):  # the body names the fields in details
        message = f"{message} {json.dumps(exc.detail)}"
    return code, message


class DatabaseSink:
    """Writes audit rows in the request's own database round trip (the default sink)."""

    def write(self, rows: list[dict[str, Any]], *, spend_quota_of: User | None = None) -> None:
        """Store the rows; with `spend_quota_of`, spend that user's quota for them in the
        same statement, or raise QuotaExceeded (429) and store nothing."""
        if spend_quota_of is None:
            insert_predictions(rows)
            return
        if connection.vendor == "postgresql" and insert_predictions_spending_quota(
            spend_quota_of, len(rows), rows
        ):
            return
        with transaction.atomic():  # spend and record together, or neither
            quota_consume(user=spend_quota_of, amount=len(rows))  # creates the month's row, or raises
            insert_predictions(rows)


class ConfiguredSink:
    """The sink settings.AUDIT_MODE chooses, looked up on every write (ADR 0030): the durable
    sink, or the Redis stream (apps/auditstream/sink.py), which falls back to the durable one."""

    def __init__(self) -> None:
        self.durable = DatabaseSink()
        self.stream = StreamSink(self.durable, Prediction._meta.db_table)

    def write(self, rows: list[dict[str, Any]], *, spend_quota_of: User | None = None) -> None:
        chosen = self.stream if stream_enabled() else self.durable
        chosen.write(rows, spend_quota_of=spend_quota_of)


sink = ConfiguredSink()


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
