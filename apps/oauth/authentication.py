"""Authenticating an OAuth access token on the resource side (every door: /api/v1, /v2, gRPC).

The token is read by `apps.accounts.authentication.authenticate_headers`, which hands it here
when its prefix says it is ours. Like an API key, it costs at most one cache hit, or one
indexed query on a miss: the per-process cache, then the shared cache, then the toolkit's
access-token row by its unique `token_checksum`, with its application, the application's
owner and the token's user joined in.
"""

import datetime as dt

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from oauth2_provider.models import AbstractAccessToken, get_access_token_model
from rest_framework.exceptions import AuthenticationFailed

from apps.core.localcache import LocalTTLCache
from apps.oauth import tokens
from apps.oauth.credentials import OAuthToken


def access_token_authenticate(raw: str) -> OAuthToken:
    """The OAuthToken for a presented access token, or AuthenticationFailed with a specific
    code: `invalid_token` (malformed, unknown or revoked: a revoked token is deleted),
    `token_expired`, `application_disabled`, `user_inactive`."""
    if not tokens.is_well_formed(raw):
        raise AuthenticationFailed("Malformed OAuth access token.", code="invalid_token")
    if raw.startswith(tokens.REFRESH_PREFIX):
        raise AuthenticationFailed(
            "This is a refresh token: exchange it at the token endpoint and send the access token.",
            code="invalid_token",
        )
    token = _token_by_checksum(tokens.checksum(raw))
    if token is None:
        raise AuthenticationFailed("Unknown or revoked OAuth access token.", code="invalid_token")
    if token.expires <= timezone.now():
        raise AuthenticationFailed("This OAuth access token has expired.", code="token_expired")
    if not token.application_usable:
        raise AuthenticationFailed("This token's OAuth application is disabled.", code="application_disabled")
    if not token.user.is_active:
        raise AuthenticationFailed("The token's user is inactive.", code="user_inactive")
    return token


# A per-process layer over the shared cache, as for API keys: a revocation made in another
# process reaches this one within LOCAL_CACHE_SECONDS (in this process, at once).
_local_tokens = LocalTTLCache(ttl=lambda: settings.LOCAL_CACHE_SECONDS)


def _cache_key(checksum: str) -> str:
    return f"oauthtoken:{checksum}"


def _token_by_checksum(checksum: str) -> OAuthToken | None:
    return _local_tokens.get_or_set(checksum, lambda: _shared_token_by_checksum(checksum))


def _shared_token_by_checksum(checksum: str) -> OAuthToken | None:
    token = cache.get(_cache_key(checksum))
    if token is None:
        row = (
            get_access_token_model()
            .objects.select_related("application__user", "user")
            .filter(token_checksum=checksum)
            .first()
        )
        token = snapshot(row) if row is not None else None
        if token is not None:
            lifetime = (token.expires - timezone.now()).total_seconds()
            timeout = min(settings.OAUTH_TOKEN_CACHE_SECONDS, int(lifetime))
            if timeout > 0:  # add, not set: never overwrite an entry evicted and rewritten meanwhile
                cache.add(_cache_key(checksum), token, timeout)
    return token


def snapshot(row: AbstractAccessToken) -> OAuthToken | None:
    """An access-token row as a credential: its scopes as its application still allows them,
    the application's models. None for a row with no user or application (not ours)."""
    application = row.application
    if application is None or row.user is None:
        return None
    return OAuthToken(
        token_id=row.pk,
        checksum=row.token_checksum,
        user=row.user,
        application_id=application.pk,
        client_id=application.client_id,
        application_name=application.name,
        scopes=frozenset(row.scope.split()) & frozenset(application.scopes),
        model_names=tuple(application.model_names),
        expires=row.expires,
        application_usable=application.is_usable(None),
    )


def forget_tokens(checksums: list[str]) -> None:
    """Evict cached tokens, so the next request reads the database (revocation, changes)."""
    for checksum in checksums:
        _local_tokens.clear(checksum)
    cache.delete_many([_cache_key(checksum) for checksum in checksums])


def live_token_checksums(**filters: object) -> list[str]:
    """The checksums of unexpired access tokens matching `filters` (an application, a user)."""
    now = timezone.now() - dt.timedelta(seconds=1)
    rows = get_access_token_model().objects.filter(expires__gt=now, **filters)
    return list(rows.values_list("token_checksum", flat=True))
