"""Writes for OAuth: applications (register, change, disable, new secret), revoking tokens,
and the authorization codes redeemed (RFC 6749 §4.1.2)."""

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import (
    AbstractAccessToken,
    get_access_token_model,
    get_refresh_token_model,
    revoke_access_token,
)

from apps.accounts.models import User
from apps.core.exceptions import InvalidInput
from apps.oauth import tokens
from apps.oauth.models import Application, RedeemedCode

logger = logging.getLogger(__name__)

# The API's names for the two grants an application may use, and the toolkit's.
GRANT_TYPES: dict[str, str] = {
    "client_credentials": Application.GRANT_CLIENT_CREDENTIALS,
    "authorization_code": Application.GRANT_AUTHORIZATION_CODE,
}
# A redeemed code is remembered this long; the code itself lives 60 seconds.
REDEEMED_CODE_MEMORY = dt.timedelta(days=1)


@dataclass
class RegisteredApplication:
    application: Application
    client_secret: str  # shown once, stored as a digest; empty for a public client


def application_create(
    *,
    owner: User,
    name: str,
    grant_type: str,
    scopes: list[str],
    client_type: str = Application.CLIENT_CONFIDENTIAL,
    redirect_uris: list[str] | None = None,
    model_names: list[str] | None = None,
) -> RegisteredApplication:
    """Register an application owned by `owner`; its secret is in the result only."""
    secret = generate_client_secret() if client_type == Application.CLIENT_CONFIDENTIAL else ""
    application = Application(
        user=owner,
        name=name,
        authorization_grant_type=GRANT_TYPES.get(grant_type, grant_type),
        client_type=client_type,
        client_secret=secret,
        redirect_uris=" ".join(redirect_uris or []),
        scopes=sorted(set(scopes)),
        model_names=sorted(set(model_names or [])),
    )
    _validate(application)
    application.save()
    return RegisteredApplication(application=application, client_secret=secret)


def application_update(*, application: Application, **changes: Any) -> Application:
    """Change name, redirect_uris (a list), scopes, model_names, or `disabled` (bool). Narrower
    scopes or models apply to the tokens already issued at once: a token's scopes are read
    against its application's on every request, and saving evicts the cached tokens."""
    if "redirect_uris" in changes:
        changes["redirect_uris"] = " ".join(changes["redirect_uris"])
    for field in ("scopes", "model_names"):
        if field in changes:
            changes[field] = sorted(set(changes[field]))
    if "disabled" in changes:
        disabled = changes.pop("disabled")
        if disabled != application.is_disabled:
            changes["disabled_at"] = timezone.now() if disabled else None
    for field, value in changes.items():
        setattr(application, field, value)
    _validate(application)
    application.save()
    return application


def application_new_secret(*, application: Application) -> str:
    """A new client secret (the old one stops working at once); shown once."""
    if application.client_type != Application.CLIENT_CONFIDENTIAL:
        raise InvalidInput("A public client has no secret.", code="public_client")
    secret = generate_client_secret()
    application.client_secret = secret
    application.save(update_fields=["client_secret", "updated"])
    return secret


def _validate(application: Application) -> None:
    try:
        application.full_clean(exclude=["client_id", "client_secret"])
    except ValidationError as exc:
        raise InvalidInput(
            "The application is invalid.", code="invalid_application", details=exc.message_dict
        ) from exc


def token_revoke(*, access_token: AbstractAccessToken) -> None:
    """Revoke an access token and the refresh token bound to it (the toolkit's one path)."""
    revoke_access_token(access_token)


@transaction.atomic
def application_revoke_tokens(*, application: Application) -> int:
    """Revoke every token of an application: its refresh tokens (kept, marked revoked, so a
    replay is still recognised) and its access tokens. Returns the access tokens revoked."""
    get_refresh_token_model().objects.filter(application=application, revoked__isnull=True).update(
        revoked=timezone.now()
    )
    # delete(), not a bulk statement: each token's post_delete evicts its cached copy.
    deleted, _ = get_access_token_model().objects.filter(application=application).delete()
    return deleted


def code_redeemed(code: str, application: Application, token_family: uuid.UUID | None) -> None:
    """Remember that `code` was exchanged, and for which refresh-token family."""
    RedeemedCode.objects.create(
        code_checksum=tokens.checksum(code), application=application, token_family=token_family
    )
    RedeemedCode.objects.filter(created_at__lt=timezone.now() - REDEEMED_CODE_MEMORY).delete()


def code_replayed(code: str, application: Application) -> None:
    """A redeemed code presented again: revoke every token issued from it (RFC 6749 §4.1.2,
    "SHOULD revoke (when possible) all tokens previously issued based on that code")."""
    redeemed = RedeemedCode.objects.filter(code_checksum=tokens.checksum(code), application=application)
    families = [family for family in redeemed.values_list("token_family", flat=True) if family]
    if not families:
        return
    logger.warning(
        "Authorization code reused by OAuth application %s: revoking the tokens it issued",
        application.client_id,
        extra={"oauth_application": application.client_id},
    )
    for family in families:
        get_refresh_token_model().revoke_family(family)
