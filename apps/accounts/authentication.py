"""DRF authentication: JWT (Bearer), API keys (Api-Key / X-API-Key) and, from settings, sessions.

Failed attempts are counted per client address; past AUTH_FAILURE_RATE a
failure answers 429 instead of 401. Keys and tokens carry 256-bit secrets that
cannot be guessed, so a successful request pays no extra cache round trip for
this; the password endpoint, where guessing is the threat, checks first.
"""

from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle
from rest_framework_simplejwt import authentication as jwt

from apps.accounts import ratelimit
from apps.accounts.models import ApiKey, User
from apps.accounts.services import api_key_authenticate
from apps.core import metrics
from apps.core.text import client_text


def client_address(request: Request) -> str:
    """The client's address, honouring X-Forwarded-For only behind NUM_PROXIES trusted proxies.

    At most 64 characters, as the audit columns hold (an IPv6 address with a zone is ~50)."""
    return client_text(BaseThrottle().get_ident(request) or "", 64)  # X-Forwarded-For is the client's


def _failure_identity(request: Request) -> str:
    return f"authfail:{client_address(request)}"


def check_auth_failures(request: Request) -> None:
    """Refuse an address that has failed authentication too often in the current window."""
    rate = ratelimit.parse_rate(settings.AUTH_FAILURE_RATE)
    if ratelimit.peek(_failure_identity(request), rate) >= rate.limit:
        verdict = ratelimit.hit(_failure_identity(request), rate, cost=0)
        metrics.THROTTLED.labels("auth_failures").inc()
        raise exceptions.Throttled(
            wait=verdict.retry_after or rate.period, detail="Too many failed authentication attempts."
        )


def record_auth_failure(request: Request) -> None:
    """Count a failure; raise Throttled (429) once the address is over its rate."""
    verdict = ratelimit.hit(_failure_identity(request), ratelimit.parse_rate(settings.AUTH_FAILURE_RATE))
    if not verdict.allowed:
        metrics.THROTTLED.labels("auth_failures").inc()
        raise exceptions.Throttled(
            wait=verdict.retry_after, detail="Too many failed authentication attempts."
        )


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Api-Key <key>` or `X-API-Key: <key>`; request.auth is the ApiKey."""

    keyword = "Api-Key"

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        raw = self._presented_key(request)
        if raw is None:
            return None
        try:
            api_key = api_key_authenticate(raw)
        except exceptions.AuthenticationFailed:
            record_auth_failure(request)
            raise
        return api_key.owner, api_key

    def _presented_key(self, request: Request) -> str | None:
        header = get_authorization_header(request).split()
        if header and header[0].lower() == self.keyword.lower().encode():
            if len(header) != 2:
                record_auth_failure(request)
                raise exceptions.AuthenticationFailed("Malformed Api-Key header.", code="invalid_api_key")
            return header[1].decode("latin-1")
        return request.headers.get("X-API-Key") or None

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class JWTAuthentication(jwt.JWTAuthentication):
    """simplejwt's Bearer authentication, with failed attempts counted per address."""

    def authenticate(self, request: Request) -> tuple[User, object] | None:
        if self.get_header(request) is None:
            return None
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            record_auth_failure(request)
            raise
