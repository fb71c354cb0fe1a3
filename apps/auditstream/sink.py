"""The stream sink: a request's audit rows and its quota spend in one Redis round trip.

`StreamSink.write` has DatabaseSink's contract (apps/inference/audit.py): the rows are
recorded, and with `spend_quota_of` the quota is spent for them, together or not at all
(429 and nothing recorded when the quota is spent). Here "recorded" means appended to the
Redis stream, which `manage.py auditwriter` copies into PostgreSQL (apps/auditstream/writer.py).

Each row gets its primary key now, from PostgreSQL's own sequence in blocks (one round trip
per block, not per request): the copy inserts with ON CONFLICT DO NOTHING, so copying an
entry twice (a writer killed after its commit, before its acknowledgement) stores it once.

Rows written inside a transaction (a job's batch) and every row while Redis is down go to
the fallback, the durable sink: the caller's transaction must own its rows, and a request
must not lose its row because Redis is away.
"""

import json
import logging
import os
import threading
import time
from typing import Any

from django.conf import settings
from django.db import connection
from redis.commands.core import Script
from redis.exceptions import RedisError

from apps.accounts import quota_counter
from apps.accounts.models import User
from apps.accounts.services.limits import limits_for
from apps.accounts.services.quota import current_period, quota_exceeded

logger = logging.getLogger(__name__)

# KEYS: the quota counter, the stream. ARGV: the amount to spend (0: none), the limit (-1:
# none), the rows (JSON), the quota's month. Returns {0, used} when the rows were appended (and the amount
# spent), {1, used} when the quota would be exceeded, {2, 0} when the counter is not seeded.
_SPEND_AND_APPEND = """
local amount = tonumber(ARGV[1])
local used = 0
if amount > 0 then
  local current = redis.call('GET', KEYS[1])
  if not current then return {2, 0} end
  used = tonumber(current)
  local limit = tonumber(ARGV[2])
  if limit >= 0 and used + amount > limit then return {1, used} end
  used = redis.call('INCRBY', KEYS[1], amount)
end
redis.call('XADD', KEYS[2], '*', 'rows', ARGV[3], 'spent', amount, 'period', ARGV[4])
return {0, used}
"""


class IdBlock:
    """Primary keys for audit rows, taken from the table's sequence a block at a time."""

    def __init__(self, table: str, size: int = 64) -> None:
        self.table, self.size = table, size
        self.lock = threading.Lock()
        self.ids: list[int] = []
        self.pid = os.getpid()

    def take(self, count: int) -> list[int]:
        with self.lock:
            if self.pid != os.getpid():  # a forked worker must not reuse its parent's block
                self.ids, self.pid = [], os.getpid()
            if len(self.ids) < count:
                self.ids.extend(self._reserve(max(self.size, count)))
            taken, self.ids = self.ids[:count], self.ids[count:]
            return taken

    def _reserve(self, count: int) -> list[int]:
        sql = "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)"
        with connection.cursor() as cursor:
            cursor.execute(sql, [self.table, count])
            return [row[0] for row in cursor.fetchall()]


class StreamSink:
    def __init__(self, fallback: Any, table: str) -> None:
        self.fallback = fallback
        self.ids = IdBlock(table)
        self._script: Script | None = None
        self._outage_logged = 0.0

    def write(self, rows: list[dict[str, Any]], *, spend_quota_of: User | None = None) -> None:
        if not rows:
            return
        if connection.in_atomic_block:  # the caller's transaction owns its rows (a job's batch)
            self.fallback.write(rows, spend_quota_of=spend_quota_of)
            return
        for row, row_id in zip(rows, self.ids.take(len(rows)), strict=True):
            row["id"] = row_id
        payload = json.dumps(rows, default=_jsonable, separators=(",", ":"))
        try:
            self._append(payload, len(rows), spend_quota_of)
        except RedisError:
            self._log_outage()
            self.fallback.write(rows, spend_quota_of=spend_quota_of)

    def _append(self, payload: str, count: int, user: User | None) -> None:
        period = current_period()
        amount, limit = 0, -1
        if user is not None:
            amount = count
            quota = limits_for(user).monthly_prediction_quota
            limit = -1 if quota is None else quota
        owner = user.pk if user is not None else 0  # no user: a counter nobody spends
        key = quota_counter.counter_key(owner, period)
        keys = [key, settings.AUDIT_STREAM_KEY]
        args = [amount, limit, payload, period.isoformat()]
        status, used = self._run(keys, args)
        if status == 2:  # the month's counter is new (or Redis lost it): seed it and go again
            quota_counter.seed(owner, period)
            status, used = self._run(keys, args)
        if status == 1:
            raise quota_exceeded(limit=limit, used=used, amount=amount, period=period)
        if status != 0:
            raise RedisError("the quota counter vanished twice in a row")

    def _run(self, keys: list[str], args: list) -> tuple[int, int]:
        client = quota_counter.redis_client()
        if self._script is None or self._script.registered_client is not client:
            self._script = client.register_script(_SPEND_AND_APPEND)  # EVALSHA, loading it once
        status, used = self._script(keys=keys, args=args)
        return int(status), int(used)

    def _log_outage(self) -> None:
        now = time.monotonic()
        if now - self._outage_logged > 10:  # one line per 10 s during an outage, not one per request
            self._outage_logged = now
            logger.warning("Redis unavailable: audit rows written durably meanwhile", exc_info=True)


def _jsonable(value: Any) -> str:
    """Datetimes in full (DjangoJSONEncoder would cut them to milliseconds); the writer reads
    every value back with its model field's to_python."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
