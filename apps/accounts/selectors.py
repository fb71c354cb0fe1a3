"""Reads for accounts."""

from typing import Any

from django.db.models import QuerySet

from apps.accounts.models import ApiKey, User
from apps.accounts.services.limits import limits_for
from apps.accounts.services.quota import usage_for
from apps.oauth.credentials import OAuthToken
from apps.registry.models import ModelGrant


def api_key_list(*, user: User) -> QuerySet[ApiKey]:
    """The user's own keys, newest first (admins manage others' keys in the admin)."""
    return ApiKey.objects.filter(owner=user).order_by("-created_at", "-pk")


def user_roles(*, user: User) -> list[str]:
    roles = ["admin"] if user.is_staff else []
    if (
        user.ml_models.exists()
        or ModelGrant.objects.filter(user=user, role=ModelGrant.Role.MAINTAINER).exists()
    ):
        roles.append("maintainer")
    roles.append("consumer")
    return roles


def profile(*, user: User, auth: Any) -> dict[str, Any]:
    limits = limits_for(user)
    if isinstance(auth, ApiKey):
        authenticated_with = f"api_key:mlp_{auth.prefix}"
    elif isinstance(auth, OAuthToken):
        authenticated_with = f"oauth:{auth.client_id}"
    elif auth is None:
        authenticated_with = "session"
    else:
        authenticated_with = "jwt"
    return {
        "username": user.username,
        "email": user.email,
        "is_staff": user.is_staff,
        "roles": user_roles(user=user),
        "authenticated_with": authenticated_with,
        "limits": {
            "plan": limits.plan,
            "rates": limits.rates,
            "monthly_prediction_quota": limits.monthly_prediction_quota,
        },
        "usage": usage_for(user),
    }
