"""The authorization server's rules, where django-oauth-toolkit and oauthlib ask for them.

- `PlatformServer`: only the grants the platform offers (authorization code, client
  credentials, refresh), and PKCE with S256 only.
- `PlatformScopes`: the platform's scopes; an application may ask for its own only.
- `PlatformValidator`: a client-credentials token acts for the application's owner; a
  reused authorization code revokes what it issued (RFC 6749 §4.1.2); an inactive user's
  code or refresh token is refused.
"""

from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.scopes import BaseScopes
from oauthlib.common import Request as OAuthlibRequest
from oauthlib.oauth2 import Server
from oauthlib.oauth2.rfc6749.errors import InvalidGrantError
from oauthlib.oauth2.rfc6749.grant_types.authorization_code import code_challenge_method_s256

from apps.oauth import services
from apps.oauth.models import SCOPES, Application


class PlatformServer(Server):
    def __init__(self, request_validator: OAuth2Validator, *args: object, **kwargs: object) -> None:
        super().__init__(request_validator, *args, **kwargs)
        # RFC 9700 §2.1.1: S256 only. "plain", which a challenge without a method also means
        # (RFC 7636 §4.3), is refused at the authorization request, before any consent.
        self.auth_grant._code_challenge_methods = {"S256": code_challenge_method_s256}
        self._response_types = {"code": self.auth_grant}
        self._grant_types = {
            "authorization_code": self.auth_grant,
            "client_credentials": self.credentials_grant,
            "refresh_token": self.refresh_grant,
        }


class PlatformScopes(BaseScopes):
    """The platform's scopes (those of API keys); an application may hold a subset, and gets
    all of them when a request names none."""

    def get_all_scopes(self) -> dict[str, str]:
        return dict(SCOPES)

    def get_available_scopes(
        self,
        application: Application | None = None,
        request: OAuthlibRequest | None = None,
        *a: Any,
        **kw: Any,
    ) -> list[str]:
        if application is None:
            return list(SCOPES)
        return [scope for scope in application.scopes if scope in SCOPES]

    def get_default_scopes(
        self,
        application: Application | None = None,
        request: OAuthlibRequest | None = None,
        *a: Any,
        **kw: Any,
    ) -> list[str]:
        return self.get_available_scopes(application, request)


class PlatformValidator(OAuth2Validator):
    def _create_access_token(
        self, expires: object, request: OAuthlibRequest, token: dict, **kwargs: object
    ) -> object:
        if request.grant_type == "client_credentials":
            # A machine client's token acts for the application's owner (RFC 6749 leaves the
            # resource owner of this grant to the server); the toolkit would save none.
            request.user = request.client.user
        return super()._create_access_token(expires, request, token, **kwargs)

    def save_bearer_token(
        self, token: dict, request: OAuthlibRequest, *args: object, **kwargs: object
    ) -> None:
        super().save_bearer_token(token, request, *args, **kwargs)
        if request.grant_type == "authorization_code":
            family = getattr(request, "issued_token_family", None)
            services.code_redeemed(request.code, request.client, family)

    def _create_refresh_token(
        self, request: OAuthlibRequest, code: str, access_token: object, previous: object
    ) -> object:
        refresh_token = super()._create_refresh_token(request, code, access_token, previous)
        request.issued_token_family = refresh_token.token_family  # what a reused code revokes
        return refresh_token

    def validate_code(
        self, client_id: str, code: str, client: Application, request: OAuthlibRequest, *a: Any, **kw: Any
    ) -> bool:
        if super().validate_code(client_id, code, client, request, *a, **kw):
            return request.user.is_active  # the user who consented may have been deactivated since
        services.code_replayed(code, client)
        return False

    def invalidate_authorization_code(
        self, client_id: str, code: str, request: OAuthlibRequest, *a: Any, **kw: Any
    ) -> None:
        try:
            super().invalidate_authorization_code(client_id, code, request, *a, **kw)
        except InvalidGrantError:
            # Two exchanges of one code at once: both got past validate_code, one deleted it.
            services.code_replayed(code, request.client)
            raise

    def validate_refresh_token(
        self, refresh_token: str, client: Application, request: OAuthlibRequest, *a: Any, **kw: Any
    ) -> bool:
        valid = super().validate_refresh_token(refresh_token, client, request, *a, **kw)
        return valid and request.user.is_active
