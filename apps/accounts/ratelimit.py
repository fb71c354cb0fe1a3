"""Fixed-window rate counters in the shared cache (Redis in production).

A counter is one cache key per (identity, window), incremented atomically
(Redis INCR), so every process and machine shares it. Fixed windows may let a
client burst up to twice the limit across a window boundary; that is the
price of one atomic operation per request.
"""

import math
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from apps.core.cache import CacheUnavailable
from apps.core.exceptions import ServiceUnavailable

_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class Rate:
    limit: int
    period: int  # seconds

    def __str__(self) -> str:
        return f"{self.limit}/{self.period}s"


def parse_rate(text: str) -> Rate:
    """'600/min', '10/s', '1000/hour', '5/10s' → Rate. Raises ValueError on anything else."""
    match = _RATE.match(text.lower())
    if not match or match.group(3) not in _UNITS:
        raise ValueError(f"Not a rate: {text!r} (expected e.g. '600/min').")
    limit, multiple, unit = int(match.group(1)), int(match.group(2) or 1), match.group(3)
    if multiple == 0:
        raise ValueError(f"Not a rate: {text!r} (a period of zero length).")
    return Rate(limit=limit, period=multiple * _UNITS[unit])


def _now() -> float:
    return time.time()


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # epoch seconds when the window ends
    retry_after: int  # seconds; 0 when allowed
    window: int = 0  # seconds: the rate's period (RateLimit-Policy's w)
    resets_in: int = 0  # seconds, rounded up, from the hit to the window's end (RateLimit's t)


def hit(identity: str, rate: Rate, *, cost: int = 1, now: float | None = None) -> Verdict:
    """Count one request for `identity` against `rate` and say whether it is allowed."""
    now = _now() if now is None else now
    window = int(now // rate.period)
    reset = (window + 1) * rate.period
    key = f"rl:{identity}:{rate.period}:{window}"
    try:
        count = _increment(key, cost, rate.period + 5)
    except CacheUnavailable as exc:
        # The shared counters are down: serve (RATE_LIMIT_FAIL_OPEN, the default) rather
        # than refuse everyone; or answer 503. The quota, in the database, still holds.
        if not settings.RATE_LIMIT_FAIL_OPEN:
            raise ServiceUnavailable("Rate limiting is unavailable; try again shortly.") from exc
        count = 0
    allowed = count <= rate.limit
    return Verdict(
        allowed=allowed,
        limit=rate.limit,
        remaining=max(rate.limit - count, 0),
        reset=reset,
        retry_after=0 if allowed else max(int(reset - now + 0.999), 1),
        window=rate.period,
        resets_in=max(math.ceil(reset - now), 0),
    )


def _increment(key: str, amount: int, timeout: int) -> int:
    if hasattr(cache, "incr_with_expiry"):  # our Redis cache: one round trip
        return cache.incr_with_expiry(key, amount, timeout)
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key, amount)
    except ValueError:  # the key expired between add and incr
        cache.add(key, 0, timeout=timeout)
        return cache.incr(key, amount)


def peek(identity: str, rate: Rate, *, now: float | None = None) -> int:
    """How many hits `identity` has in the current window, without counting one."""
    now = _now() if now is None else now
    return int(cache.get(f"rl:{identity}:{rate.period}:{int(now // rate.period)}", 0))
