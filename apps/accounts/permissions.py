"""Permissions tied to how the caller authenticated."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apps.accounts.credentials import Credential, credential_of
from apps.accounts.models import ApiKey

if TYPE_CHECKING:
    from rest_framework.views import APIView


def request_api_key(request: Request) -> Credential | None:
    """The credential narrower than its user that the request came with: an API key, or an
    OAuth access token, which obeys the same limits (None for a JWT or a session). Every
    `api_key` parameter that applies a key's limits takes either."""
    return credential_of(request.auth)


class ApiKeyScope(BasePermission):
    """With an API key or an OAuth token, the view's scope must be one of its scopes.

    A view names its scope with `required_scope` (a string) or `get_required_scope(request)`;
    a view with no scope is closed to keys and OAuth tokens (managing keys and OAuth
    applications among them). JWT and session callers act with their full user rights.
    """

    def has_permission(self, request: Request, view: APIView) -> bool:
        credential = request_api_key(request)
        if credential is None or getattr(view, "allow_any_api_key", False):
            return True
        getter = getattr(view, "get_required_scope", None)
        scope = getter(request) if getter else getattr(view, "required_scope", None)
        if scope is None:
            raise PermissionDenied(
                f"This endpoint cannot be used with an {credential.label}: use a JWT or a session.",
                code="api_key_not_allowed",
            )
        require_scope(credential, scope)
        return True


def require_scope(api_key: Credential | None, scope: str) -> None:
    """403 scope_missing for an API key or OAuth token without `scope` (any door; others act
    as their user)."""
    if api_key is not None and not api_key.has_scope(scope):
        raise PermissionDenied(f"This {api_key.label} lacks the '{scope}' scope.", code="scope_missing")


class RegistryScope:
    """Mixin: reading the registry needs `models:read`, changing it `models:write`."""

    def get_required_scope(self, request: Request) -> str:
        return (
            ApiKey.Scope.MODELS_READ
            if request.method in ("GET", "HEAD", "OPTIONS")
            else ApiKey.Scope.MODELS_WRITE
        )
