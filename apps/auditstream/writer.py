"""The audit writer's copy: stream entries into PostgreSQL, in batches, idempotently.

One batch is one transaction: the rows are inserted with ON CONFLICT DO NOTHING (each row
carries the primary key it got at request time), and what the newly inserted requests
spent is added to QuotaUsage in the same transaction. Only after the commit are the
entries acknowledged (XACK) and deleted from the stream. A writer killed before its
commit leaves its entries pending, and a writer killed between commit and acknowledgement
leaves entries already stored: either way another writer takes them over after
AUDIT_WRITER_CLAIM_SECONDS and copies them again, which stores nothing twice and spends
nothing twice (the quota counts only rows this transaction inserted).
"""

import datetime as dt
import functools
import json
import logging
from collections import Counter
from typing import Any, cast

from django.db import IntegrityError, connection, transaction
from django.db.models import ForeignKey
from django.utils import timezone

from apps.accounts.models import QuotaUsage, User
from apps.inference.models import Prediction

# The rows go in through psycopg's own cursor (below), whose errors Django does not wrap.
REFUSED: tuple[type[Exception], ...] = (IntegrityError,)
try:  # the `postgres` group (requirements-postgres.txt): the writer only runs on PostgreSQL
    import psycopg

    REFUSED = (IntegrityError, psycopg.IntegrityError)
except ImportError:  # the embedded SQLite default: `manage.py auditwriter` has nothing to copy
    pass

logger = logging.getLogger(__name__)

GROUP = "auditwriter"
INSERT_CHUNK = 500  # rows per INSERT statement


class Writer:
    def __init__(self, client: Any, stream: str, consumer: str, *, batch: int, claim_seconds: float) -> None:
        self.client, self.stream, self.consumer = client, stream, consumer
        self.batch, self.claim_ms = batch, int(claim_seconds * 1000)

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except Exception as exc:  # redis.ResponseError: the group exists already
            if "BUSYGROUP" not in str(exc):
                raise

    def copy_once(self, *, block_ms: int) -> int:
        """Copy one batch: this writer's own entries not yet acknowledged (a failed attempt)
        first, then those a dead writer left, else new ones (waiting up to block_ms for them).
        The number of entries copied."""
        entries = self._read("0") or self._taken_over() or self._read(">", block_ms)
        if not entries:
            return 0
        dead = store(entries)
        if dead:  # rows PostgreSQL refuses even without their dangling references: kept aside
            self.client.xadd(f"{self.stream}:dead", {"rows": json.dumps(dead, default=str)})
        ids = [entry_id for entry_id, _ in entries]
        self.client.xack(self.stream, GROUP, *ids)
        self.client.xdel(self.stream, *ids)
        return len(entries)

    def _taken_over(self) -> list:
        found = self.client.xautoclaim(
            self.stream, GROUP, self.consumer, min_idle_time=self.claim_ms, start_id="0-0", count=self.batch
        )
        return [entry for entry in found[1] if entry[1]]  # (a deleted entry comes back empty)

    def _read(self, start: str, block_ms: int = 0) -> list:
        """start "0": this consumer's pending entries; ">": entries no consumer has had."""
        found = self.client.xreadgroup(
            GROUP, self.consumer, {self.stream: start}, count=self.batch, block=block_ms or None
        )
        return [entry for entry in found[0][1] if entry[1]] if found else []

    def backlog(self) -> int:
        """Entries in the stream not yet copied (pending or unread)."""
        return self.client.xlen(self.stream)


def store(entries: list) -> list[dict]:
    """Insert the entries' rows and add their spends to the quota, in one transaction.
    Returns the rows that could not be stored at all."""
    messages = [_decode(fields) for _, fields in entries]
    with transaction.atomic():
        inserted, dead = insert_rows([row for rows, _, _ in messages for row in rows])
        spends: Counter = Counter()
        for rows, spent, period in messages:
            if spent and rows[0]["id"] in inserted and rows[0].get("user_id") is not None:
                spends[(rows[0]["user_id"], period)] += spent
        add_quota_usage(spends)
    return dead


def _decode(fields: dict) -> tuple[list[dict], int, dt.date]:
    rows = json.loads(fields[b"rows"])
    return rows, int(fields[b"spent"]), dt.date.fromisoformat(fields[b"period"].decode())


def insert_rows(rows: list[dict]) -> tuple[set[int], list[dict]]:
    """The ids inserted now (not those stored before), and the rows refused."""
    with connection.cursor() as cursor:  # a refusal surfaces at its statement, not at commit
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    for attempt in range(2):
        try:
            with transaction.atomic():  # a savepoint, to try again after a refusal
                inserted: set[int] = set()
                for start in range(0, len(rows), INSERT_CHUNK):
                    inserted |= _insert(rows[start : start + INSERT_CHUNK])
                return inserted, []
        except REFUSED:
            if attempt == 0:  # most likely a user, key or version deleted since the request
                _drop_dangling_references(rows)
    return _insert_one_by_one(rows)


def _insert_one_by_one(rows: list[dict]) -> tuple[set[int], list[dict]]:
    inserted: set[int] = set()
    dead = []
    for row in rows:
        try:
            with transaction.atomic():
                inserted |= _insert([row])
        except REFUSED:
            logger.exception("Audit row %s refused by the database; kept in the dead stream", row["id"])
            dead.append(row)
    return inserted, dead


def _drop_dangling_references(rows: list[dict]) -> None:
    """A user, key, version or job item deleted since the request: the row keeps no reference
    to it, as the deletion's on_delete=SET_NULL would have done to a stored row."""
    for field in Prediction._meta.concrete_fields:
        if not isinstance(field, ForeignKey) or not field.null:
            continue
        if not field.db_constraint:  # type: ignore[attr-defined]  # django-stubs 6.1 lacks it
            continue
        wanted = {row[field.attname] for row in rows if row.get(field.attname) is not None}
        if not wanted:
            continue
        found = set(field.related_model._default_manager.filter(pk__in=wanted).values_list("pk", flat=True))
        for row in rows:
            if row.get(field.attname) is not None and row[field.attname] not in found:
                row[field.attname] = None


def _insert(rows: list[dict]) -> set[int]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING id per row, every column of the model, sent
    together (psycopg's executemany pipelines them): a row is read back with each field's own
    to_python, and a field it lacks gets the field's default.

    One statement of many VALUES rows cost 1 ms of CPU per row here, three quarters of it in
    psycopg splitting a query text of thousands of placeholders (not cached past 4 kB); one
    row's statement, bound server-side, is parsed once."""
    fields = Prediction._meta.concrete_fields
    params = [
        [
            field.get_db_prep_save(
                field.to_python(row[field.attname]) if field.attname in row else field.get_default(),
                connection,
            )
            for field in fields
        ]
        for row in rows
    ]
    connection.ensure_connection()
    inserted: set[int] = set()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.executemany(_insert_sql(), params, returning=True)
        while True:
            inserted.update(found[0] for found in cursor.fetchall())
            if not cursor.nextset():
                return inserted


@functools.cache
def _insert_sql() -> str:
    quote = connection.ops.quote_name
    fields = Prediction._meta.concrete_fields
    columns = ", ".join(quote(cast(str, f.column)) for f in fields)  # a concrete field has its column
    values = ", ".join(["%s"] * len(fields))
    table = quote(Prediction._meta.db_table)
    return f"INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT DO NOTHING RETURNING {quote('id')}"  # noqa: S608


def add_quota_usage(spends: Counter) -> None:
    """Add each (user, month)'s spend to QuotaUsage: the durable count catches up with Redis.
    A user deleted since the request has nothing left to count."""
    table = connection.ops.quote_name(QuotaUsage._meta.db_table)
    users = connection.ops.quote_name(User._meta.db_table)
    sql = (
        f"INSERT INTO {table} (user_id, period, used, updated_at) "  # noqa: S608 (names from the models)
        f"SELECT %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM {users} WHERE id = %s) "
        f"ON CONFLICT (user_id, period) DO UPDATE SET used = {table}.used + EXCLUDED.used, "
        "updated_at = EXCLUDED.updated_at"
    )
    now = timezone.now()
    params = [(user, period, amount, now, user) for (user, period), amount in spends.items()]
    if params:
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)
