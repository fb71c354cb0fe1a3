"""A user's effective limits: rates and monthly quota, admin overrides over settings defaults."""

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from apps.accounts.models import User, UserLimits
from apps.accounts.ratelimit import Rate, parse_rate
from apps.core.localcache import LocalTTLCache

logger = logging.getLogger(__name__)


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
