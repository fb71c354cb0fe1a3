"""Per-user (and per-key) request rates by scope, shared by every process through the cache."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from apps.accounts import ratelimit
from apps.accounts.credentials import Credential
from apps.accounts.models import ApiKey, User
from apps.accounts.permissions import request_api_key
from apps.accounts.services.limits import rate_for
from apps.core import metrics

if TYPE_CHECKING:
    from rest_framework.views import APIView


def count_request(user: User, api_key: Credential | None, scope: str) -> ratelimit.Verdict | None:
    """Count one request of `user` against their rate for `scope`, and against the key's own
    `rate_limit_per_minute` when it has one (an OAuth token has none: its user's rates
    apply); the verdict closer to its limit. None when the
    scope has no rate for this user. Every door that throttles calls this."""
    rate = rate_for(user, scope)
    if rate is None:
        return None
    verdict = ratelimit.hit(f"user:{user.pk}:{scope}", rate)
    if verdict.allowed and isinstance(api_key, ApiKey) and api_key.rate_limit_per_minute:
        key_rate = ratelimit.Rate(limit=api_key.rate_limit_per_minute, period=60)
        key_verdict = ratelimit.hit(f"key:{api_key.pk}:{scope}", key_rate)
        if not key_verdict.allowed or key_verdict.remaining < verdict.remaining:
            verdict = key_verdict
    if not verdict.allowed:
        metrics.THROTTLED.labels(scope).inc()
    return verdict


class ScopedRateThrottle(BaseThrottle):
    """Counts a request against the user's rate for the view's throttle scope.

    A view names its scope with `throttle_scope` or `get_throttle_scope(request)`
    (None: not throttled). An API key with its own `rate_limit_per_minute` is
    also held to that. The verdict goes on the request for the X-RateLimit-* headers.
    """

    def allow_request(self, request: Request, view: APIView) -> bool:
        getter = getattr(view, "get_throttle_scope", None)
        scope = getter(request) if getter else getattr(view, "throttle_scope", None)
        if scope is None or not request.user.is_authenticated:
            return True
        verdict = count_request(request.user, request_api_key(request), scope)
        if verdict is None:
            return True
        # Read by RateLimitHeadersMiddleware, which sees Django's request, not DRF's.
        request._request.ratelimit = verdict  # type: ignore[attr-defined]  # our own attribute
        request._request.throttled_scope = scope  # type: ignore[attr-defined]
        self.verdict = verdict
        return verdict.allowed

    def wait(self) -> float | None:
        return self.verdict.retry_after
