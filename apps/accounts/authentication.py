"""Authentication: Bearer (a JWT or an OAuth access token), API keys (Api-Key / X-API-Key)
and, from settings, sessions.

Every door that takes credentials in headers reads them with `authenticate_headers`: DRF's
classes below for HTTP, the gRPC door (apps/oip/grpc/) for its metadata. The rules are
written once, here.

Failed attempts are counted per client address; past AUTH_FAILURE_RATE a
failure answers 429 instead of 401. Keys and tokens carry 256-bit secrets that
cannot be guessed, so a successful request pays no extra cache round trip for
this; the password endpoint, where guessing is the threat, checks first.
"""

from collections.abc import Mapping
from functools import cache
from types import SimpleNamespace
from typing import Any, cast

from django.conf import settings
from rest_framework import HTTP_HEADER_ENCODING, exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle
from rest_framework_simplejwt import authentication as jwt

from apps.accounts import ratelimit
from apps.accounts.credentials import credential_of, log_fields
from apps.accounts.models import ApiKey, User
from apps.accounts.services.api_keys import api_key_authenticate
from apps.core import metrics
from apps.core.middleware import log_context
from apps.core.text import client_text
from apps.oauth.authentication import access_token_authenticate
from apps.oauth.tokens import is_oauth_token


def client_address(request: Request) -> str:
    """The client's address, honouring X-Forwarded-For only behind NUM_PROXIES trusted proxies.

    At most 64 characters, as the audit columns hold (an IPv6 address with a zone is ~50)."""
    return client_address_of(request.headers, request.META.get("REMOTE_ADDR"))


def client_address_of(headers: Mapping[str, str], remote_addr: str | None) -> str:
    """client_address() for any door: its headers (or gRPC metadata, `x-forwarded-for`) and
    the address of the connection's far end. DRF's rule (NUM_PROXIES), applied once."""
    request = SimpleNamespace(headers=headers, META={"REMOTE_ADDR": remote_addr})
    # get_ident reads only `headers` and META: any door's request passes as DRF's.
    ident = BaseThrottle().get_ident(cast(Request, request))
    return client_text(ident or "", 64)  # X-Forwarded-For is the client's


def _failure_identity(client: str) -> str:
    return f"authfail:{client}"


def check_auth_failures(request: Request) -> None:
    """Refuse an address that has failed authentication too often in the current window."""
    rate = ratelimit.parse_rate(settings.AUTH_FAILURE_RATE)
    identity = _failure_identity(client_address(request))
    if ratelimit.peek(identity, rate) >= rate.limit:
        verdict = ratelimit.hit(identity, rate, cost=0)
        metrics.THROTTLED.labels("auth_failures").inc()
        raise exceptions.Throttled(
            wait=verdict.retry_after or rate.period, detail="Too many failed authentication attempts."
        )


def record_auth_failure(request: Request) -> None:
    """Count a failure; raise Throttled (429) once the address is over its rate."""
    count_auth_failure(client_address(request))


def count_auth_failure(client: str) -> None:
    """Count a failure of `client` (an address); raise Throttled once it is over its rate."""
    verdict = ratelimit.hit(_failure_identity(client), ratelimit.parse_rate(settings.AUTH_FAILURE_RATE))
    if not verdict.allowed:
        metrics.THROTTLED.labels("auth_failures").inc()
        raise exceptions.Throttled(
            wait=verdict.retry_after, detail="Too many failed authentication attempts."
        )


def authenticate_headers(headers: Mapping[str, str], *, client: str) -> tuple[User, object] | None:
    """The caller that request headers (or gRPC metadata) name, in the order of DRF's classes:
    `authorization: Bearer <JWT or OAuth access token>`, else an API key (`authorization:
    Api-Key <key>` or `x-api-key`). Names are looked up in lower case (Django's
    request.headers ignores case; gRPC metadata keys are lower case). None without
    credentials; a failure raises AuthenticationFailed, counted against `client`, or
    Throttled once it is over its rate."""
    return _bearer().authenticate_headers(headers, client=client) or _api_key().authenticate_headers(
        headers, client=client
    )


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Api-Key <key>` or `X-API-Key: <key>`; request.auth is the ApiKey."""

    keyword = "Api-Key"

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        return self.authenticate_headers(request.headers, client=client_address(request))

    def authenticate_headers(self, headers: Mapping[str, str], *, client: str) -> tuple[User, ApiKey] | None:
        raw = self._presented_key(headers, client)
        if raw is None:
            return None
        try:
            api_key = api_key_authenticate(raw)
        except exceptions.AuthenticationFailed:
            count_auth_failure(client)
            raise
        return api_key.owner, api_key

    def _presented_key(self, headers: Mapping[str, str], client: str) -> str | None:
        header = headers.get("authorization", "").split()
        if header and header[0].lower() == self.keyword.lower():
            if len(header) != 2:
                count_auth_failure(client)
                raise exceptions.AuthenticationFailed("Malformed Api-Key header.", code="invalid_api_key")
            return header[1]
        return headers.get("x-api-key") or None

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class BearerAuthentication(jwt.JWTAuthentication):
    """`Authorization: Bearer <token>`: a JWT (simplejwt), or an OAuth 2.0 access token.

    One step tells them apart by the token's form, never by trying one and failing over to
    the other: an OAuth token starts with its prefix (`mlpat_`, apps/oauth/tokens.py), which
    no JWT can (a JWT is `eyJ…`, three dotted base64url parts). request.auth is then the
    OAuthToken, which narrows its user as an API key does, or simplejwt's validated token.
    Failed attempts are counted per address."""

    # The second item may be an OAuthToken, not simplejwt's Token: a deliberate widening.
    def authenticate(self, request: Request) -> tuple[User, Any] | None:  # type: ignore[override]
        found = self.authenticate_headers(request.headers, client=client_address(request))
        if found is not None:
            log_context(request).update(log_fields(credential_of(found[1])))
        return found

    def authenticate_headers(self, headers: Mapping[str, str], *, client: str) -> tuple[User, Any] | None:
        header = headers.get("authorization")
        if header is None:
            return None
        try:
            raw_token = self.get_raw_token(header.encode(HTTP_HEADER_ENCODING, "replace"))
            if raw_token is None:
                return None
            text = raw_token.decode(HTTP_HEADER_ENCODING, "replace")
            if is_oauth_token(text):
                token = access_token_authenticate(text)
                return token.user, token
            validated_token = self.get_validated_token(raw_token)
            return cast(User, self.get_user(validated_token)), validated_token  # AUTH_USER_MODEL
        except exceptions.AuthenticationFailed:
            count_auth_failure(client)
            raise


@cache
def _bearer() -> BearerAuthentication:
    return BearerAuthentication()


@cache
def _api_key() -> ApiKeyAuthentication:
    return ApiKeyAuthentication()
