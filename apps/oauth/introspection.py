"""Token introspection (RFC 7662): what a token is, for a resource server that holds one.

A token is active when it is known, unexpired, not revoked, its application is usable and
its user active: exactly when the platform itself would accept it. Its `scope` is the
effective one (the token's scopes as its application still allows them).
"""

import calendar
import datetime as dt

from django.utils import timezone
from oauth2_provider.models import (
    get_access_token_model,
    get_refresh_token_model,
    refresh_token_expire_timedelta,
)

from apps.oauth import tokens
from apps.oauth.authentication import snapshot
from apps.oauth.models import Application

INACTIVE = {"active": False}


def introspect(raw: str, client: Application) -> dict:
    """The RFC 7662 answer about `raw` for `client` (a confidential application): active only
    for a token `client` may see (its own; any, for an application of a staff user)."""
    if not tokens.is_well_formed(raw):
        return INACTIVE
    if raw.startswith(tokens.REFRESH_PREFIX):
        return _refresh_token(raw, client)
    return _access_token(raw, client)


def _may_see(client: Application, application_id: int) -> bool:
    return client.pk == application_id or client.user.is_staff


def _access_token(raw: str, client: Application) -> dict:
    row = (
        get_access_token_model()
        .objects.select_related("application__user", "user")
        .filter(token_checksum=tokens.checksum(raw))
        .first()
    )
    token = snapshot(row) if row is not None else None
    if token is None or not _may_see(client, token.application_id):
        return INACTIVE
    if token.expires <= timezone.now() or not token.application_usable or not token.user.is_active:
        return INACTIVE
    return {
        "active": True,
        "token_type": "Bearer",
        "scope": " ".join(sorted(token.scopes)),
        "client_id": token.client_id,
        "username": token.user.get_username(),
        "sub": str(token.user.pk),
        "iat": _epoch(row.created),
        "exp": _epoch(token.expires),
        "models": list(token.model_names),  # the application's model list; empty: any model
    }


def _refresh_token(raw: str, client: Application) -> dict:
    row = (
        get_refresh_token_model()
        .objects.select_related("application__user", "user", "access_token")
        .filter(token_checksum=tokens.checksum(raw), revoked__isnull=True)
        .first()
    )
    if row is None or not _may_see(client, row.application_id) or row.access_token is None:
        return INACTIVE
    application = row.application
    lifetime = refresh_token_expire_timedelta() or dt.timedelta(days=36500)
    expires = row.access_token.expires + lifetime  # it slides with its access token
    if expires <= timezone.now() or not application.is_usable(None) or not row.user.is_active:
        return INACTIVE
    return {
        "active": True,
        "token_type": "refresh_token",
        "scope": " ".join(sorted(set(row.access_token.scope.split()) & set(application.scopes))),
        "client_id": application.client_id,
        "username": row.user.get_username(),
        "sub": str(row.user.pk),
        "iat": _epoch(row.created),
        "exp": _epoch(expires),
    }


def _epoch(moment: dt.datetime) -> int:
    return calendar.timegm(moment.utctimetuple())
