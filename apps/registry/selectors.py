"""Reads from the registry, always through what the user may see."""

from django.db.models import Q, QuerySet

from apps.accounts.models import User
from apps.core.exceptions import NotFound
from apps.registry.models import MLModel, ModelAlias, ModelAliasHistory, ModelVersion


def model_list_visible(*, user: User) -> QuerySet[MLModel]:
    """Staff see every model; others see their own and the internal ones."""
    models = MLModel.objects.select_related("owner")
    if user.is_staff:
        return models
    return models.filter(Q(owner=user) | Q(visibility=MLModel.Visibility.INTERNAL))


def model_get_visible(*, user: User, name: str) -> MLModel:
    """The model, or NotFound when it does not exist *or* the user may not see it,
    so that names of private models do not leak."""
    model = model_list_visible(user=user).filter(name=name).first()
    if model is None:
        raise NotFound(f"No model named '{name}'.", code="model_not_found")
    return model


def model_can_write(*, user: User, model: MLModel) -> bool:
    return user.is_staff or model.owner_id == user.pk


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
