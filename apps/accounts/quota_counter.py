"""The monthly quota counted in Redis, for AUDIT_MODE=stream (ADR 0030).

In the stream mode a synchronous prediction spends its quota in Redis, in the same atomic
step that appends its audit rows to the stream (apps/auditstream/sink.py); the audit writer
adds what each copied request spent to PostgreSQL's QuotaUsage in the transaction that
inserts its rows, so PostgreSQL catches up with Redis as the rows land.

The counter of a month is seeded from PostgreSQL the first time it is needed (and again
if Redis lost it). Spends and refunds made in PostgreSQL directly (a job's submission,
any request written durably while Redis was down) are mirrored into the counter after
they commit, when the counter exists.
"""

import datetime as dt
import logging
from typing import TYPE_CHECKING, cast

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from apps.accounts.models import QuotaUsage
from apps.auditstream.mode import stream_enabled

if TYPE_CHECKING:
    from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger(__name__)

# Longer than a month, so a counter outlives its month and then goes by itself.
COUNTER_SECONDS = 40 * 24 * 3600

# Add to a counter only if it exists: a missing one is seeded from PostgreSQL when needed,
# and a spend already in PostgreSQL is part of that seed.
_ADD_IF_PRESENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end
return nil
"""


def redis_client():
    """The shared cache's own Redis client: the same connection pool as the throttle's
    counters, so the stream mode opens no connection of its own."""
    # Django's RedisCache has no public accessor; the cache is one whenever this is called.
    return cast("RedisCache", cache)._cache.get_client(write=True)


def counter_key(user_id: int, period: dt.date) -> str:
    return f"{settings.AUDIT_STREAM_KEY}:quota:{user_id}:{period:%Y-%m}"


def seed(user_id: int, period: dt.date) -> None:
    """Create the month's counter from PostgreSQL's count, unless another process did."""
    used = (
        QuotaUsage.objects.filter(user_id=user_id, period=period).values_list("used", flat=True).first() or 0
    )
    redis_client().set(counter_key(user_id, period), used, nx=True, ex=COUNTER_SECONDS)


def current(user_id: int, period: dt.date) -> int | None:
    """The month's count in Redis in the stream mode (ahead of PostgreSQL's by the rows not
    yet copied); None in the durable mode, when there is no counter, or Redis is away."""
    if not stream_enabled():
        return None
    try:
        value = redis_client().get(counter_key(user_id, period))
    except Exception:  # the usage page reads PostgreSQL's count instead
        logger.warning("Could not read the quota counter from Redis", exc_info=True)
        return None
    return None if value is None else int(value)


def mirror_on_commit(user_id: int, period: dt.date, amount: int) -> None:
    """After the current transaction commits, add `amount` (negative: a refund) to the
    month's counter if it exists. Only in the stream mode; a Redis error is logged."""
    if amount and stream_enabled():
        transaction.on_commit(lambda: _add_if_present(user_id, period, amount))


def _add_if_present(user_id: int, period: dt.date, amount: int) -> None:
    try:
        redis_client().eval(_ADD_IF_PRESENT, 1, counter_key(user_id, period), amount)
    except Exception:  # the spend is committed in PostgreSQL; the counter lags until re-seeded
        logger.warning("Could not mirror a quota spend into Redis", exc_info=True)
