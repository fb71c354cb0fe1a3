"""Writes for accounts: API keys (create, authenticate, revoke) and the monthly quota."""

import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed

from apps.accounts import quota_counter
from apps.accounts.models import ApiKey, QuotaUsage, User, UserLimits
from apps.accounts.ratelimit import Rate, parse_rate
from apps.core import metrics
from apps.core.exceptions import ApplicationError, InvalidInput
from apps.core.localcache import LocalTTLCache

logger = logging.getLogger(__name__)

KEY_PREFIX = "mlp_"
# mlp_ + 8 lowercase letters/digits (the public lookup id) + _ + 43 URL-safe characters (the secret).
_KEY_FORMAT = re.compile(r"^mlp_([a-z0-9]{8})_([A-Za-z0-9_-]{43})$")
_LOOKUP_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


# --- API keys ---------------------------------------------------------------------------------


def _digest(key: str) -> str:
    secret = settings.API_KEY_HMAC_SECRET.encode()
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


@dataclass
class CreatedKey:
    api_key: ApiKey
    key: str  # the full key: shown once, never stored


def api_key_create(
    *,
    owner: User,
    name: str,
    scopes: list[str],
    model_names: list[str] | None = None,
    expires_at: dt.datetime | None = None,
    rate_limit_per_minute: int | None = None,
) -> CreatedKey:
    unknown = sorted(set(scopes) - set(ApiKey.Scope.values))
    if not scopes or unknown:
        raise InvalidInput(
            f"Unknown scopes: {', '.join(unknown)}." if unknown else "Give at least one scope.",
            code="invalid_scopes",
            details={"allowed": ApiKey.Scope.values},
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("expires_at must be in the future.", code="invalid_expiry")
    for _ in range(5):  # a prefix collision is astronomically rare; retry rather than fail
        prefix = "".join(secrets.choice(_LOOKUP_ALPHABET) for _ in range(8))
        key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                api_key = ApiKey.objects.create(
                    owner=owner,
                    name=name,
                    prefix=prefix,
                    digest=_digest(key),
                    scopes=sorted(set(scopes)),
                    model_names=sorted(set(model_names or [])),
                    expires_at=expires_at,
                    rate_limit_per_minute=rate_limit_per_minute,
                )
            return CreatedKey(api_key=api_key, key=key)
        except IntegrityError:
            continue
    raise ApplicationError(
        "Could not allocate a key id; try again.", code="key_allocation_failed", status_code=503
    )


def api_key_authenticate(raw: str) -> ApiKey:
    """The ApiKey for a presented key, or AuthenticationFailed with a specific code.

    At most one indexed lookup by prefix (with the owner joined in), and usually
    one cache hit instead; the secret is compared in constant time either way.
    Revoking a key or changing its owner evicts the cached copy at once.
    """
    raw = raw.strip()
    match = _KEY_FORMAT.match(raw)
    if not match:
        raise AuthenticationFailed("Malformed API key.", code="invalid_api_key")
    api_key = _api_key_by_prefix(match.group(1))
    if api_key is None or not hmac.compare_digest(api_key.digest, _digest(raw)):
        raise AuthenticationFailed("Invalid API key.", code="invalid_api_key")
    if api_key.is_revoked:
        raise AuthenticationFailed("This API key has been revoked.", code="api_key_revoked")
    if api_key.is_expired:
        raise AuthenticationFailed("This API key has expired.", code="api_key_expired")
    if not api_key.owner.is_active:
        raise AuthenticationFailed("The key's owner is inactive.", code="user_inactive")
    _touch(api_key)
    return api_key


def _cache_key(prefix: str) -> str:
    return f"apikey:{prefix}"


# A per-process layer over the shared cache: a revocation made in another process
# reaches this one within LOCAL_CACHE_SECONDS (in this process, at once).
_local_keys = LocalTTLCache(ttl=lambda: settings.LOCAL_CACHE_SECONDS)


def _api_key_by_prefix(prefix: str) -> ApiKey | None:
    return _local_keys.get_or_set(prefix, lambda: _shared_api_key_by_prefix(prefix))


def _shared_api_key_by_prefix(prefix: str) -> ApiKey | None:
    api_key = cache.get(_cache_key(prefix))
    if api_key is None:
        api_key = ApiKey.objects.select_related("owner").filter(prefix=prefix).first()
        if api_key is not None:
            # add, not set: never overwrite an entry written (or evicted and rewritten) meanwhile.
            cache.add(_cache_key(prefix), api_key, settings.API_KEY_CACHE_SECONDS)
    return api_key


def api_key_forget(prefixes: list[str]) -> None:
    """Evict cached keys, so the next request reads the database (revocation, owner changes)."""
    for prefix in prefixes:
        _local_keys.clear(prefix)
    cache.delete_many([_cache_key(prefix) for prefix in prefixes])


def _touch(api_key: ApiKey) -> None:
    """Record use at most once per interval per key, across processes: a marker in the
    shared cache (`add` succeeds for one request per interval) gates the write. The key
    object itself is not written back to the cache, so a copy read before a concurrent
    revocation is never re-cached after it. Each process asks the shared cache at most
    once per interval per key."""
    _touched.get_or_set(api_key.pk, lambda: _touch_shared(api_key))


def _touch_shared(api_key: ApiKey) -> bool:
    interval = settings.API_KEY_LAST_USED_INTERVAL_SECONDS
    if cache.add(f"apikey-used:{api_key.pk}", 1, interval):
        now = timezone.now()
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return True


# A process that has passed the shared marker skips it for the rest of the interval: no
# cache round trip per request (off where the per-process caches are off, as in tests).
_touched = LocalTTLCache(
    ttl=lambda: settings.API_KEY_LAST_USED_INTERVAL_SECONDS if settings.LOCAL_CACHE_SECONDS > 0 else 0
)


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key (kept for the audit trail); revoking twice changes nothing."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    api_key_forget([api_key.prefix])
    return api_key


# --- Limits -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EffectiveLimits:
    plan: str
    rates: dict[str, str]
    monthly_prediction_quota: int | None


# Per-process layer over the shared cache: a request reads the limits twice (throttle, quota).
_local_limits = LocalTTLCache(ttl=lambda: settings.LOCAL_CACHE_SECONDS)


def limits_for(user: User) -> EffectiveLimits:
    """The user's rates and quota: admin overrides over settings defaults; cached briefly."""
    return _local_limits.get_or_set(user.pk, lambda: _shared_limits_for(user))


def _shared_limits_for(user: User) -> EffectiveLimits:
    cache_key = f"limits:{user.pk}"
    limits = cache.get(cache_key)
    if limits is None:
        override = UserLimits.objects.filter(user=user).first()
        rates = dict(settings.THROTTLE_RATES)
        quota = settings.MONTHLY_PREDICTION_QUOTA
        plan = "default"
        if override is not None:
            plan = override.plan or "custom"
            for scope in rates:
                rates[scope] = getattr(override, f"{scope}_rate") or rates[scope]
            if override.monthly_prediction_quota is not None:
                quota = override.monthly_prediction_quota
        limits = EffectiveLimits(plan=plan, rates=rates, monthly_prediction_quota=quota)
        cache.set(cache_key, limits, settings.LIMITS_CACHE_SECONDS)
    return limits


def limits_invalidate(user_id: int) -> None:
    _local_limits.clear(user_id)
    cache.delete(f"limits:{user_id}")


def rate_for(user: User, scope: str) -> Rate | None:
    text = limits_for(user).rates.get(scope)
    if not text:
        return None
    try:
        return parse_rate(text)
    except ValueError:  # a bad override slipped past validation: fall back to the default
        logger.error("Invalid %s rate %r for user %s; using the default", scope, text, user.pk)
        default = settings.THROTTLE_RATES[scope]
        return parse_rate(default) if default else None


# --- Monthly prediction quota -------------------------------------------------------------------


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
