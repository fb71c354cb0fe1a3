"""Registry API, shared by its views: the model lookups that enforce who may see and change a
model, and the base view with the registry's key scopes and write throttle."""

from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.accounts.authenticated import AuthenticatedRequest
from apps.accounts.permissions import RegistryScope, request_api_key
from apps.registry import selectors
from apps.registry.models import MLModel


def visible_model(request: AuthenticatedRequest, name: str) -> MLModel:
    return selectors.model_get_visible(user=request.user, name=name, api_key=request_api_key(request))


def writable_model(request: AuthenticatedRequest, name: str) -> MLModel:
    """The model if the user may change it; 404 if they cannot see it, 403 if they only see it."""
    model = visible_model(request, name)
    if not selectors.model_can_write(user=request.user, model=model):
        raise PermissionDenied("Only the model's owner, its maintainers or an admin may change it.")
    return model


def managed_model(request: AuthenticatedRequest, name: str) -> MLModel:
    """The model if the user owns it (or is an admin): deleting it and granting roles."""
    model = visible_model(request, name)
    if not selectors.model_can_manage(user=request.user, model=model):
        raise PermissionDenied("Only the model's owner or an admin may do this.")
    return model


class RegistryApi(RegistryScope, APIView):
    """Base of registry views: `models:read` / `models:write` key scopes, and writes
    counted against the user's `registry_write` rate."""

    def get_throttle_scope(self, request: Request) -> str | None:
        return None if request.method in ("GET", "HEAD", "OPTIONS") else "registry_write"
