"""OpenAPI security schemes for our authentication classes (Swagger UI's Authorize button).

`Authorization: Bearer` takes a JWT or an OAuth 2.0 access token, so the Bearer class
declares two schemes: `jwtAuth`, and `oauth2` with the client-credentials and
authorization-code flows, each operation naming the scope an OAuth token needs for it.
"""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object

from apps.oauth.models import SCOPES


class BearerScheme(OpenApiAuthenticationExtension):
    target_class = "apps.accounts.authentication.BearerAuthentication"
    name = ["jwtAuth", "oauth2"]

    def get_security_definition(self, auto_schema: Any) -> list[dict]:
        scopes = {str(name): description for name, description in SCOPES.items()}
        return [
            build_bearer_security_scheme_object(
                header_name="HTTP_AUTHORIZATION",
                token_prefix="Bearer",  # noqa: S106 (a scheme name, not a secret)
                bearer_format="JWT",
            ),
            {
                "type": "oauth2",
                "description": "An OAuth 2.0 access token (mlpat_…), sent as `Authorization: Bearer`. "
                "The authorization-code flow needs PKCE (S256); metadata at "
                "/.well-known/oauth-authorization-server.",
                "flows": {
                    "clientCredentials": {"tokenUrl": "/oauth/token/", "scopes": scopes},
                    "authorizationCode": {
                        "authorizationUrl": "/oauth/authorize/",
                        "tokenUrl": "/oauth/token/",
                        "refreshUrl": "/oauth/token/",
                        "scopes": scopes,
                    },
                },
            },
        ]

    def get_security_requirement(self, auto_schema: Any) -> list[dict]:
        """A JWT always; an OAuth token with the operation's scope, unless the operation is
        closed to API keys and OAuth tokens (no scope: key and application management)."""
        view = auto_schema.view
        if getattr(view, "allow_any_api_key", False):
            return [{"jwtAuth": []}, {"oauth2": []}]
        getter = getattr(view, "get_required_scope", None)
        scope = getter(view.request) if getter else getattr(view, "required_scope", None)
        if scope is None:
            return [{"jwtAuth": []}]
        return [{"jwtAuth": []}, {"oauth2": [str(scope)]}]


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apps.accounts.authentication.ApiKeyAuthentication"
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema: object) -> dict:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "An API key (mlp_…); `Authorization: Api-Key <key>` works too.",
        }
