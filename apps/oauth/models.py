"""OAuth 2.0 applications (django-oauth-toolkit's swapped application model) and the codes
they redeemed.

Tokens, grants and refresh tokens are the toolkit's own models (`oauth2_provider`), stored as
SHA-256 digests. What the platform adds to an application is what an API key has: the
scopes it may ask for, an optional list of models, and a switch to disable it.
"""

import ipaddress
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models
from oauth2_provider.models import AbstractApplication, ApplicationManager

from apps.accounts.models import ApiKey

# The platform's scopes, as API keys have them, with what the consent page tells a user.
SCOPES: dict[str, str] = {
    ApiKey.Scope.MODELS_READ: "Read the models, versions and aliases you can see.",
    ApiKey.Scope.MODELS_WRITE: "Change your models: upload versions, move aliases, grant roles.",
    ApiKey.Scope.PREDICT: "Make predictions with the models you can use, and read their audit trail.",
    ApiKey.Scope.JOBS: "Submit, follow and cancel batch jobs.",
}
GRANT_TYPES = (AbstractApplication.GRANT_AUTHORIZATION_CODE, AbstractApplication.GRANT_CLIENT_CREDENTIALS)
_LOOPBACK_NAMES = ("localhost",)


class Application(AbstractApplication):
    """A client of the authorization server, owned by a user.

    - client credentials (a machine client, confidential): its tokens act for its owner;
    - authorization code with PKCE (a third-party application, confidential or public): its
      tokens act for the user who consented.

    Either way a token holds at most the application's scopes and models, and never more
    than its user may do. A disabled application, or one whose owner is inactive, cannot
    get tokens, and its tokens stop working.
    """

    scopes = models.JSONField(default=list, help_text="The platform scopes its tokens may hold.")
    # Names of the models its tokens may be used on; empty means every model the user may use.
    model_names = models.JSONField(default=list, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)

    objects = ApplicationManager()

    class Meta(AbstractApplication.Meta):
        db_table = "oauth_application"
        ordering = ["-created"]

    def natural_key(self) -> tuple[str]:
        return (self.client_id,)

    @property
    def is_disabled(self) -> bool:
        return self.disabled_at is not None

    def is_usable(self, request: object) -> bool:
        """The toolkit asks before it issues a token (and we before a token is accepted)."""
        return not self.is_disabled and self.user is not None and self.user.is_active

    def allows_model(self, name: str) -> bool:
        return not self.model_names or name in self.model_names

    def clean(self) -> None:
        super().clean()
        errors: dict[str, str] = {}
        if self.authorization_grant_type not in GRANT_TYPES:
            errors["authorization_grant_type"] = "Only the authorization code and client credentials grants."
        elif (
            self.authorization_grant_type == self.GRANT_CLIENT_CREDENTIALS
            and self.client_type != self.CLIENT_CONFIDENTIAL
        ):
            errors["client_type"] = "A client-credentials application must be confidential."
        if self.user_id is None:
            errors["user"] = "An application has an owner."
        if not self.scopes or not set(self.scopes) <= set(SCOPES):
            errors["scopes"] = f"At least one of: {', '.join(SCOPES)}."
        uri_error = redirect_uris_error(self.redirect_uris.split(), self.authorization_grant_type)
        if uri_error:
            errors["redirect_uris"] = uri_error
        if errors:
            raise ValidationError(errors)


def redirect_uris_error(uris: list[str], grant_type: str) -> str | None:
    """What is wrong with an application's redirect URIs, or None. The toolkit checks their
    form; the platform adds: https, or http on a loopback address only (RFC 8252 §7.3), and
    none for client credentials, which never redirect."""
    if grant_type == AbstractApplication.GRANT_CLIENT_CREDENTIALS:
        return "A client-credentials application has no redirect URIs." if uris else None
    if not uris:
        return "Give at least one redirect URI."
    for uri in uris:
        parts = urlsplit(uri)
        if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
            return f"{uri}: http only on a loopback address (127.0.0.1, [::1], localhost); else https."
        if parts.scheme not in ("http", "https") or parts.fragment or "#" in uri:
            return f"{uri}: an absolute https URL without a fragment."
    return None


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RedeemedCode(models.Model):
    """An authorization code exchanged for tokens, remembered so that presenting it again
    revokes those tokens (RFC 6749 §4.1.2: the code was stolen, or the exchange replayed).
    The toolkit only refuses the reuse. Kept one day; a code lives 60 seconds."""

    code_checksum = models.CharField(max_length=64, db_index=True)
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="+")
    # The refresh-token family the exchange started: revoking it revokes every token issued
    # from the code, the refreshed ones included.
    token_family = models.UUIDField(null=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"code redeemed by {self.application_id} at {self.created_at:%Y-%m-%d %H:%M:%S}"
