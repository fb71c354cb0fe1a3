"""Writes to the registry: models, versions (upload, edit, archive), aliases and grants."""

import hashlib
import logging
from typing import Any, cast

from django.conf import settings
from django.core.files import File
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from rest_framework.exceptions import PermissionDenied

from apps.accounts.models import User
from apps.core import tasks
from apps.core.exceptions import Conflict, InvalidInput, NotFound, PayloadTooLarge, UnprocessableInput
from apps.registry.intake import formats
from apps.registry.models import MLModel, ModelAlias, ModelAliasHistory, ModelGrant, ModelVersion
from apps.registry.preprocessing import parse_labels, parse_preprocessing
from apps.registry.selectors import model_can_manage
from apps.registry.services import converting
from apps.registry.storage import model_store
from apps.registry.validation import ModelFileError, inspect_model_file
from apps.registry.validation import check_label_count as validation_check_label_count
from apps.rollouts.models import Rollout

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024


# --- Models ------------------------------------------------------------------------------


@transaction.atomic
def model_create(
    *,
    owner: User,
    name: str,
    description: str = "",
    task: str = MLModel.Task.IMAGE_CLASSIFICATION,
    visibility: str = MLModel.Visibility.PRIVATE,
) -> MLModel:
    if MLModel.objects.filter(name=name).exists():
        raise Conflict(f"A model named '{name}' already exists.", code="model_exists")
    try:
        with transaction.atomic():
            return MLModel.objects.create(
                owner=owner, name=name, description=description, task=task, visibility=visibility
            )
    except IntegrityError as exc:  # lost a race with a concurrent create
        raise Conflict(f"A model named '{name}' already exists.", code="model_exists") from exc


@transaction.atomic
def model_update(*, model: MLModel, data: dict[str, Any], user: User) -> MLModel:
    """Change a model. Visibility decides who sees the model without a grant, which is
    granting access: like granting a role, only the owner and admins may change it."""
    if (
        "visibility" in data
        and data["visibility"] != model.visibility
        and not model_can_manage(user=user, model=model)
    ):
        raise PermissionDenied(
            "Only the model's owner or an admin may change its visibility.", code="visibility_owner_only"
        )
    fields = [key for key in ("description", "task", "visibility") if key in data]
    for key in fields:
        setattr(model, key, data[key])
    if fields:
        model.save(update_fields=[*fields, "updated_at"])
    return model


def model_delete(*, model: MLModel) -> None:
    """Delete a model with its versions, aliases, history and evaluation sets; files go after
    the commit."""
    with transaction.atomic():
        # The lock keeps concurrent uploads and alias moves out until the delete commits.
        MLModel.objects.select_for_update().get(pk=model.pk)
        names = [n for n in model.versions.values_list("artifact", flat=True) if n]
        names += [n for n in model.versions.values_list("source", flat=True) if n]  # uploads converted
        names += model.evaluation_sets.values_list("file", flat=True)  # cascade with the model
        ModelAlias.objects.filter(model=model).delete()  # aliases protect their versions
        model.delete()
        transaction.on_commit(lambda: _delete_files(names))


def _delete_files(names: list[str]) -> None:
    for name in names:
        try:
            model_store.delete(name)
        except OSError:
            logger.warning("Could not delete artifact %s", name, exc_info=True)


# --- Versions -----------------------------------------------------------------------------


def _sha256_and_size(file: File) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    file.seek(0)
    for chunk in file.chunks(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    file.seek(0)
    return digest.hexdigest(), size


def _inspect_upload(file: File) -> None:
    """Refuse bytes that are not a self-contained ONNX model, before anything is stored."""
    try:
        with converting.upload_on_disk(file, suffix=".onnx") as path:
            inspect_model_file(path)
    except ModelFileError as exc:
        raise UnprocessableInput(exc.message, code=exc.code) from exc


def model_version_create(
    *,
    model: MLModel,
    file: UploadedFile | File,
    created_by: User | None,
    labels: Any = None,
    preprocessing: Any = None,
    notes: str = "",
    enqueue_validation: bool = True,
    declared_format: str | None = None,
    conversion_options: dict[str, Any] | None = None,
) -> ModelVersion:
    """Store an uploaded ONNX file as the model's next version, status `pending`; a file in
    another format (apps/registry/intake/formats.py) as its source, status `converting`.

    The file is checked (size, ONNX structure, duplicate) before it is stored;
    the version number comes from a locked counter, so concurrent uploads get
    distinct numbers; validation is enqueued only once the row is committed.
    """
    labels = parse_labels(labels)
    preprocessing = parse_preprocessing(preprocessing)
    sha256, size = _sha256_and_size(file)
    if size > settings.MODEL_UPLOAD_MAX_BYTES:
        raise PayloadTooLarge(
            f"The file is {size} bytes; the limit is {settings.MODEL_UPLOAD_MAX_BYTES} bytes.",
            details={"limit_bytes": settings.MODEL_UPLOAD_MAX_BYTES},
        )
    fmt, options = converting.upload_format(file, declared=declared_format, options=conversion_options or {})
    if fmt == formats.ONNX:
        _inspect_upload(file)
    _raise_if_duplicate(model, sha256)

    stored_name: str | None = None
    try:
        with transaction.atomic():
            # UPDATE … SET next = next + 1 takes the row lock: concurrent uploads queue here.
            MLModel.objects.filter(pk=model.pk).update(next_version_number=F("next_version_number") + 1)
            number = MLModel.objects.values_list("next_version_number", flat=True).get(pk=model.pk) - 1
            _raise_if_duplicate(model, sha256)  # re-check under the lock
            version = ModelVersion(
                model=model,
                number=number,
                sha256=sha256,
                size_bytes=size,
                labels=labels,
                preprocessing=preprocessing,
                notes=notes,
                created_by=created_by,
            )
            if fmt == formats.ONNX:
                version.artifact.save("model.onnx", file, save=False)
                stored_name = version.artifact.name
            else:  # converted to ONNX on the `conversion` queue, then validated
                stored_name = converting.store_source(version, file, fmt, options)
            version.save()
            if enqueue_validation and fmt != formats.ONNX:
                transaction.on_commit(lambda: converting.enqueue_version_conversion(version))
            elif enqueue_validation:
                transaction.on_commit(lambda: enqueue_version_validation(version))
    except IntegrityError as exc:
        if stored_name:
            _delete_files([stored_name])
        raise Conflict(
            "This file was uploaded to this model concurrently.", code="duplicate_version"
        ) from exc
    except BaseException:
        if stored_name:
            _delete_files([stored_name])  # never leave an orphan file in the store
        raise
    return version


def _raise_if_duplicate(model: MLModel, sha256: str) -> None:
    existing = (
        ModelVersion.objects.filter(model=model, sha256=sha256).values_list("number", flat=True).first()
    )
    if existing is not None:
        raise Conflict(
            f"This file is already version {existing} of model '{model.name}'.",
            code="duplicate_version",
            details={"version": existing, "sha256": sha256},
        )


def enqueue_version_validation(version: ModelVersion) -> None:
    try:
        tasks.enqueue(tasks.VALIDATE_MODEL_VERSION, str(version.pk))
    except Exception:  # the broker is down: the version stays pending, to be re-enqueued
        logger.exception("Could not enqueue validation of version %s", version.pk)


@transaction.atomic
def model_version_update(*, version: ModelVersion, data: dict[str, Any]) -> ModelVersion:
    fields = []
    if "notes" in data:
        version.notes = data["notes"]
        fields.append("notes")
    if "labels" in data:
        version.labels = parse_labels(data["labels"])
        _check_labels_fit(version)
        fields.append("labels")
    if "preprocessing" in data:
        version.preprocessing = parse_preprocessing(data["preprocessing"])
        fields.append("preprocessing")
    if fields:
        version.save(update_fields=[*fields, "updated_at"])
    return version


def _check_labels_fit(version: ModelVersion) -> None:
    """Labels of a validated classifier must match its class dimension, as at validation."""
    outputs = version.signature.get("outputs") or []
    if not outputs or not version.labels or version.model.task != MLModel.Task.IMAGE_CLASSIFICATION:
        return
    try:
        validation_check_label_count(version.signature, len(version.labels))
    except ModelFileError as exc:
        raise UnprocessableInput(exc.message, code=exc.code) from exc


@transaction.atomic
def model_version_archive(*, version: ModelVersion) -> ModelVersion:
    """Retire a version. Its file is kept (for audit and rollback); aliases must move first."""
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    aliases = list(version.aliases.values_list("name", flat=True))
    if aliases:
        raise Conflict(
            f"Version {version.number} is the target of alias(es) {', '.join(aliases)}; move them first.",
            code="version_in_use",
            details={"aliases": aliases},
        )
    rollouts = list(
        Rollout.objects.filter(status=Rollout.Status.ACTIVE)
        .filter(Q(primary=version) | Q(candidates__version=version) | Q(shadow=version))
        .values_list("pk", flat=True)
        .distinct()
    )
    if rollouts:
        raise Conflict(
            f"Version {version.number} is in active rollout(s) {rollouts}; end them first.",
            code="version_in_rollout",
            details={"rollouts": rollouts},
        )
    if version.status != ModelVersion.Status.ARCHIVED:
        version.status = ModelVersion.Status.ARCHIVED
        version.archived_at = timezone.now()
        version.save(update_fields=["status", "archived_at", "updated_at"])
    return version


# --- Aliases ---------------------------------------------------------------------------------


ALIAS_NAME_MAX_LENGTH = cast(int, ModelAlias._meta.get_field("name").max_length)  # a CharField's: set


@transaction.atomic
def alias_set(
    *, model: MLModel, name: str, version: ModelVersion, user: User | None, force: bool = False
) -> ModelAlias:
    """Point alias `name` at a ready version, creating or moving it, and log the change.

    `force` (admins only) also allows a version refused only by its accuracy gate."""
    if len(name) > ALIAS_NAME_MAX_LENGTH:
        raise InvalidInput(
            f"An alias name is at most {ALIAS_NAME_MAX_LENGTH} characters.",
            details={"alias": [f"At most {ALIAS_NAME_MAX_LENGTH} characters."]},
        )
    MLModel.objects.select_for_update().get(pk=model.pk)  # serialise alias changes per model
    _check_no_rollout(model, name)
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    # Forced only onto a version refused by its gate alone, not one archived since.
    if force and version.status == ModelVersion.Status.FAILED and version.failure_code == "accuracy_gate":
        if user is None or not user.is_staff:
            raise PermissionDenied("Only an admin may force an alias onto a version that failed its gate.")
    elif version.status != ModelVersion.Status.READY:
        raise Conflict(
            f"Version {version.number} is {version.status}; an alias can only point at a ready version.",
            code="version_not_ready",
            details={"version": version.number, "status": version.status},
        )
    alias = ModelAlias.objects.filter(model=model, name=name).first()
    if alias is None:
        alias = ModelAlias.objects.create(model=model, name=name, version=version, updated_by=user)
        _log_alias(model, name, ModelAliasHistory.Action.SET, None, version, user)
    elif alias.version_id != version.pk:
        previous = alias.version
        alias.version, alias.updated_by = version, user
        alias.save(update_fields=["version", "updated_by", "updated_at"])
        _log_alias(model, name, ModelAliasHistory.Action.MOVE, previous, version, user)
    return alias


@transaction.atomic
def alias_delete(*, alias: ModelAlias, user: User | None) -> None:
    MLModel.objects.select_for_update().get(pk=alias.model_id)
    _check_no_rollout(alias.model, alias.name)
    _log_alias(alias.model, alias.name, ModelAliasHistory.Action.DELETE, alias.version, None, user)
    alias.delete()


def _check_no_rollout(model: MLModel, name: str) -> None:
    """An alias under an active rollout moves only by its promotion (409 otherwise)."""
    active = Rollout.objects.filter(model=model, alias_name=name, status=Rollout.Status.ACTIVE).first()
    if active is not None:
        raise Conflict(
            f"Alias '{name}' has an active rollout (#{active.pk}): promote or abort it first.",
            code="rollout_active",
            details={"rollout": active.pk},
        )


def _log_alias(
    model: MLModel,
    name: str,
    action: str,
    from_version: ModelVersion | None,
    to_version: ModelVersion | None,
    user: User | None,
) -> None:
    ModelAliasHistory.objects.create(
        model=model,
        alias_name=name,
        action=action,
        from_version=from_version,
        from_number=from_version.number if from_version else None,
        to_version=to_version,
        to_number=to_version.number if to_version else None,
        changed_by=user,
    )


# --- Grants ----------------------------------------------------------------------------------


@transaction.atomic
def grant_set(*, model: MLModel, user: User, role: str, granted_by: User | None) -> ModelGrant:
    """Make `user` a maintainer or consumer of `model` (the owner needs no grant)."""
    if user.pk == model.owner_id:
        raise Conflict("The owner already has every right on the model.", code="grant_to_owner")
    defaults = {"role": role, "granted_by": granted_by}
    try:
        with transaction.atomic():
            grant, _ = ModelGrant.objects.update_or_create(model=model, user=user, defaults=defaults)
    except IntegrityError:  # a concurrent request created it first: update that one
        grant, _ = ModelGrant.objects.update_or_create(model=model, user=user, defaults=defaults)
    return grant


@transaction.atomic
def grant_delete(*, model: MLModel, username: str) -> None:
    deleted, _ = ModelGrant.objects.filter(model=model, user__username=username).delete()
    if not deleted:
        raise NotFound(f"'{username}' has no grant on model '{model.name}'.", code="grant_not_found")
