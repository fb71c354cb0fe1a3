"""Reads from the registry, always through what the user may see."""

from django.db.models import QuerySet
from rest_framework.exceptions import PermissionDenied

from apps.accounts.credentials import Credential
from apps.accounts.models import User
from apps.core.exceptions import NotFound
from apps.registry.models import MLModel, ModelAlias, ModelAliasHistory, ModelGrant, ModelVersion


def model_list_visible(*, user: User, api_key: Credential | None = None) -> QuerySet[MLModel]:
    """The models the caller may see (the rule: `MLModel.objects.visible_to`)."""
    return MLModel.objects.visible_to(user, api_key).select_related("owner")


def model_get_visible(*, user: User, name: str, api_key: Credential | None = None) -> MLModel:
    """The model, or NotFound when it does not exist *or* the user may not see it,
    so that names of private models do not leak. A key not granted this model
    name gets 403 whether or not the model exists."""
    if api_key is not None and not api_key.allows_model(name):
        raise PermissionDenied(f"This API key is not granted model '{name}'.", code="model_not_granted")
    model = model_list_visible(user=user, api_key=api_key).filter(name=name).first()
    if model is None:
        raise NotFound(f"No model named '{name}'.", code="model_not_found")
    return model


def model_is_visible(*, user: User, model: MLModel) -> bool:
    """The same rule for one model already in hand, without a key (the caller checks the key
    first, for its 403): a query only for a grant, none for staff, the owner or internal."""
    return model.is_visible_to(user)


def model_role(*, user: User, model: MLModel) -> str | None:
    """'admin', 'owner', 'maintainer', 'consumer', or None (visible only if internal)."""
    if user.is_staff:
        return "admin"
    if model.owner_id == user.pk:
        return "owner"
    grant = ModelGrant.objects.filter(model=model, user=user).values_list("role", flat=True).first()
    if grant is not None:
        return grant
    return "consumer" if model.visibility == MLModel.Visibility.INTERNAL else None


def model_can_write(*, user: User, model: MLModel) -> bool:
    """Admins, the owner and maintainers may upload versions, edit and move aliases."""
    return model_role(user=user, model=model) in ("admin", "owner", ModelGrant.Role.MAINTAINER)


def model_can_manage(*, user: User, model: MLModel) -> bool:
    """Only admins and the owner may delete the model or change who else may use it."""
    return user.is_staff or model.owner_id == user.pk


def grant_list(*, model: MLModel) -> QuerySet[ModelGrant]:
    return model.grants.select_related("user").order_by("user__username")


def version_list(*, model: MLModel, status: str | None = None) -> QuerySet[ModelVersion]:
    versions = model.versions.select_related("model", "created_by").prefetch_related("aliases")
    if status:
        versions = versions.filter(status=status)
    return versions.order_by("-number")


def version_get(*, model: MLModel, number: int) -> ModelVersion:
    version = version_list(model=model).filter(number=number).first()
    if version is None:
        raise NotFound(f"Model '{model.name}' has no version {number}.", code="version_not_found")
    return version


def alias_list(*, model: MLModel) -> QuerySet[ModelAlias]:
    return model.aliases.select_related("version", "updated_by").order_by("name")


def alias_get(*, model: MLModel, name: str) -> ModelAlias:
    alias = alias_list(model=model).filter(name=name).first()
    if alias is None:
        raise NotFound(f"Model '{model.name}' has no alias '{name}'.", code="alias_not_found")
    return alias


def alias_history_list(*, model: MLModel, name: str | None = None) -> QuerySet[ModelAliasHistory]:
    history = model.alias_history.select_related("changed_by")
    if name:
        history = history.filter(alias_name=name)
    return history
