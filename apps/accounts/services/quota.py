"""Writes for the monthly prediction quota: spend, refund, and the usage report."""

import datetime as dt

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from apps.accounts import quota_counter
from apps.accounts.models import QuotaUsage, User
from apps.accounts.services.limits import limits_for
from apps.core import metrics
from apps.core.exceptions import ApplicationError


class QuotaExceeded(ApplicationError):
    status_code = 429
    code = "quota_exceeded"
    retry_after: int | None = None  # seconds until the quota resets, for Retry-After


def current_period(now: dt.datetime | None = None) -> dt.date:
    now = now or timezone.now()
    return now.astimezone(dt.UTC).date().replace(day=1)


def next_period(period: dt.date) -> dt.date:
    return (period.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def quota_consume(*, user: User, amount: int = 1) -> None:
    """Spend `amount` predictions of this month's quota.

    The check and the spend are one conditional UPDATE, so two servers can never
    both spend the last unit; in the steady state it is the only query. Raises
    QuotaExceeded (429) when the spend would go over.
    """
    period = current_period()
    limit = limits_for(user).monthly_prediction_quota
    if _spend(user.pk, period, amount, limit) or (
        _ensure_usage_row(user, period) and _spend(user.pk, period, amount, limit)  # the month's first
    ):
        quota_counter.mirror_on_commit(user.pk, period, amount)  # the stream mode's Redis counter
        return
    used = QuotaUsage.objects.values_list("used", flat=True).get(user=user, period=period)
    raise quota_exceeded(limit=limit, used=used, amount=amount, period=period)


def quota_exceeded(*, limit: int | None, used: int, amount: int, period: dt.date) -> QuotaExceeded:
    """The 429 for a spend of `amount` over `limit` with `used` spent (counted once)."""
    resets = next_period(period)
    error = QuotaExceeded(
        f"Monthly prediction quota of {limit} is spent ({used} used); it resets on {resets:%Y-%m-%d}.",
        details={"limit": limit, "used": used, "requested": amount, "resets_at": f"{resets:%Y-%m-%d}"},
    )
    reset_at = dt.datetime.combine(resets, dt.time.min, tzinfo=dt.UTC)
    error.retry_after = max(int((reset_at - timezone.now()).total_seconds()), 1)
    metrics.THROTTLED.labels("quota").inc()
    return error


def quota_spend_statement(*, user: User, amount: int) -> tuple[str, list]:
    """The conditional UPDATE that spends quota, as SQL and parameters.

    Plain SQL because it runs on every prediction and the ORM's compilation costs
    more than the round trip; exposed so the prediction path can send it together
    with its audit INSERT in one statement (see apps/inference/audit.py).
    It updates no row when the quota would be exceeded or the month's row is missing.
    """
    return _spend_statement(user.pk, current_period(), amount, limits_for(user).monthly_prediction_quota)


def _spend_statement(user_id: int, period: dt.date, amount: int, limit: int | None) -> tuple[str, list]:
    ops = connection.ops
    table = ops.quote_name(QuotaUsage._meta.db_table)
    sql = f"UPDATE {table} SET used = used + %s, updated_at = %s WHERE user_id = %s AND period = %s"  # noqa: S608
    params: list = [
        amount,
        ops.adapt_datetimefield_value(timezone.now()),
        user_id,
        ops.adapt_datefield_value(period),
    ]
    if limit is not None:
        sql += " AND used <= %s"
        params.append(limit - amount)
    return sql, params


def _spend(user_id: int, period: dt.date, amount: int, limit: int | None) -> bool:
    sql, params = _spend_statement(user_id, period, amount, limit)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount == 1


def quota_refund(*, user: User, amount: int = 1) -> None:
    """Give back units spent on predictions that were not made (for example a failed batch)."""
    period = current_period()
    if QuotaUsage.objects.filter(user=user, period=period, used__gte=amount).update(used=F("used") - amount):
        quota_counter.mirror_on_commit(user.pk, period, -amount)


def _ensure_usage_row(user: User, period: dt.date) -> bool:
    """Create this month's usage row if it is missing; True if it was missing."""
    if QuotaUsage.objects.filter(user=user, period=period).exists():
        return False
    try:
        with transaction.atomic():
            QuotaUsage.objects.create(user=user, period=period, used=0)
    except IntegrityError:
        pass  # a concurrent request created it first
    return True


def usage_for(user: User) -> dict:
    period = current_period()
    used = QuotaUsage.objects.filter(user=user, period=period).values_list("used", flat=True).first() or 0
    used = max(used, quota_counter.current(user.pk, period) or 0)  # the stream mode's count is ahead
    limit = limits_for(user).monthly_prediction_quota
    return {
        "period": f"{period:%Y-%m}",
        "predictions_used": used,
        "monthly_prediction_quota": limit,
        "remaining": None if limit is None else max(limit - used, 0),
        "resets_at": f"{next_period(period):%Y-%m-%d}",
    }
