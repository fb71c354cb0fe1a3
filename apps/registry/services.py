"""Writes to the registry: models, versions, aliases, and validation of versions."""

import datetime as dt
import hashlib
import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.accounts.models import User
from apps.core.exceptions import Conflict, NotFound, PayloadTooLarge, UnprocessableInput
from apps.registry.models import MLModel, ModelAlias, ModelAliasHistory, ModelGrant, ModelVersion
from apps.registry.preprocessing import parse_labels, parse_preprocessing
from apps.registry.storage import local_path, model_store
from apps.registry.validation import ModelFileError, inspect_model_file, validate_model_file
from apps.registry.validation import check_label_count as validation_check_label_count

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
def model_update(*, model: MLModel, data: dict[str, Any]) -> MLModel:
    fields = [key for key in ("description", "task", "visibility") if key in data]
    for key in fields:
        setattr(model, key, data[key])
    if fields:
        model.save(update_fields=[*fields, "updated_at"])
    return model


def model_delete(*, model: MLModel) -> None:
    """Delete a model with its versions, aliases and history; files go after the commit."""
    with transaction.atomic():
        # The lock keeps concurrent uploads and alias moves out until the delete commits.
        MLModel.objects.select_for_update().get(pk=model.pk)
        names = list(model.versions.values_list("artifact", flat=True))
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
    path = getattr(file, "temporary_file_path", None)
    try:
        if path is not None:
            inspect_model_file(path())
            return
        with tempfile.NamedTemporaryFile(suffix=".onnx") as tmp:
            for chunk in file.chunks(_CHUNK):
                tmp.write(chunk)
            tmp.flush()
            inspect_model_file(tmp.name)
    except ModelFileError as exc:
        raise UnprocessableInput(exc.message, code=exc.code) from exc
    finally:
        file.seek(0)


def model_version_create(
    *,
    model: MLModel,
    file: UploadedFile | File,
    created_by: User | None,
    labels: Any = None,
    preprocessing: Any = None,
    notes: str = "",
    enqueue_validation: bool = True,
) -> ModelVersion:
    """Store an uploaded ONNX file as the model's next version, status `pending`.

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
            version.artifact.save("model.onnx", file, save=False)
            stored_name = version.artifact.name
            version.save()
            if enqueue_validation:
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
    from workers.registry import validate_model_version

    try:
        validate_model_version.delay(str(version.pk))
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
    if version.status != ModelVersion.Status.ARCHIVED:
        version.status = ModelVersion.Status.ARCHIVED
        version.archived_at = timezone.now()
        version.save(update_fields=["status", "archived_at", "updated_at"])
    return version


# --- Validation (runs on a worker) ------------------------------------------------------------


def model_version_validate(*, version_id: int) -> ModelVersion | None:
    """Validate a version: `pending` (or an interrupted `validating`) → `ready` | `failed`.

    Idempotent: a version already ready, failed or archived is left alone, so a
    redelivered task does nothing twice. Attempts are capped, so a model that
    kills its worker every time ends `failed` instead of looping.
    """
    # Claimable: pending, or validating under an expired lease (its worker died). A
    # duplicate delivery while another worker holds the lease finds nothing to claim.
    lease_expired = timezone.now() - dt.timedelta(seconds=settings.VALIDATION_LEASE_SECONDS)
    claimable = Q(status=ModelVersion.Status.PENDING) | Q(
        status=ModelVersion.Status.VALIDATING, validation_started_at__lt=lease_expired
    )
    claimed = ModelVersion.objects.filter(
        claimable, pk=version_id, validation_attempts__lt=settings.VALIDATION_MAX_ATTEMPTS
    ).update(
        status=ModelVersion.Status.VALIDATING,
        validation_attempts=F("validation_attempts") + 1,
        validation_started_at=timezone.now(),
    )
    if not claimed:
        _fail_if_attempts_exhausted(version_id, claimable)
        return ModelVersion.objects.filter(pk=version_id).first()

    version = ModelVersion.objects.select_related("model").get(pk=version_id)
    heartbeat = _LeaseHeartbeat(version_id)  # renews the lease until validation ends
    try:
        report = _run_validation(version)
    except ModelFileError as exc:
        outcome: dict[str, Any] = {
            "status": ModelVersion.Status.FAILED,
            "reason": exc.message,
            "code": exc.code,
        }
    except Exception as exc:  # a bug or an environment problem: record it, never leave it hanging
        logger.exception("Validation of version %s crashed", version_id)
        outcome = {
            "status": ModelVersion.Status.FAILED,
            "reason": f"Validation error: {exc}",
            "code": "validation_error",
        }
    else:
        outcome = {
            "status": ModelVersion.Status.READY,
            "signature": report.signature,
            "metrics": report.metrics,
        }
    finally:
        heartbeat.stop()
    return _finish_validation(version, **outcome)


class _LeaseHeartbeat:
    """Renews a validating version's lease every VALIDATION_HEARTBEAT_SECONDS while its
    worker works, so the lease can be short: a worker that dies stops renewing, and
    the reconciler re-enqueues the version once the lease has expired."""

    def __init__(self, version_id: int) -> None:
        self.version_id = version_id
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{version_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from django.db import connection

        try:
            while not self._stopped.wait(settings.VALIDATION_HEARTBEAT_SECONDS):
                ModelVersion.objects.filter(pk=self.version_id, status=ModelVersion.Status.VALIDATING).update(
                    validation_started_at=timezone.now()
                )
        except Exception:  # the next renewal, or the reconciler, will sort it out
            logger.warning("Lease renewal for version %s failed", self.version_id, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)


def versions_to_reenqueue() -> list[int]:
    """Versions whose validation is owed: pending for longer than the enqueue grace period
    (a lost message or a failed enqueue), or validating under an expired lease (a dead worker)."""
    now = timezone.now()
    stale_pending = now - dt.timedelta(seconds=settings.VALIDATION_PENDING_GRACE_SECONDS)
    lease_expired = now - dt.timedelta(seconds=settings.VALIDATION_LEASE_SECONDS)
    owed = Q(status=ModelVersion.Status.PENDING, created_at__lt=stale_pending) | Q(
        status=ModelVersion.Status.VALIDATING, validation_started_at__lt=lease_expired
    )
    return list(ModelVersion.objects.filter(owed).values_list("pk", flat=True)[:100])


def reconcile_versions() -> list[int]:
    """Re-enqueue every version whose validation is owed (run periodically by Celery beat)."""
    from workers.registry import validate_model_version

    owed = versions_to_reenqueue()
    for version_id in owed:
        validate_model_version.delay(str(version_id))
    if owed:
        logger.info("Re-enqueued validation of versions %s", owed)
    return owed


def _run_validation(version: ModelVersion):
    crop = version.preprocessing.get("crop") or version.preprocessing.get("resize")
    label_count = len(version.labels) if version.model.task == MLModel.Task.IMAGE_CLASSIFICATION else None
    with _artifact_on_disk(version.artifact.name) as path:
        return validate_model_file(
            path,
            intra_op_threads=settings.ORT_INTRA_OP_THREADS,
            latency_runs=settings.VALIDATION_LATENCY_RUNS,
            throughput_batch=settings.VALIDATION_THROUGHPUT_BATCH,
            throughput_runs=settings.VALIDATION_THROUGHPUT_RUNS,
            spatial_hint=crop,
            label_count=label_count or None,
        )


class _artifact_on_disk:
    """A local path for an artifact: the file itself on filesystem storage, otherwise
    (an S3-compatible storage) a temporary copy, removed on exit."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tmp: tempfile._TemporaryFileWrapper | None = None

    def __enter__(self) -> Path:
        if not model_store.exists(self.name):
            raise ModelFileError("artifact_missing", "The stored model file is missing.")
        try:
            return local_path(self.name)
        except NotImplementedError:
            self.tmp = tempfile.NamedTemporaryFile(suffix=".onnx")
            with model_store.open(self.name, "rb") as source:
                for chunk in source.chunks(_CHUNK):
                    self.tmp.write(chunk)
            self.tmp.flush()
            return Path(self.tmp.name)

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            self.tmp.close()


def _finish_validation(
    version: ModelVersion,
    status: str,
    *,
    reason: str = "",
    code: str = "",
    signature: dict | None = None,
    metrics: dict | None = None,
) -> ModelVersion:
    # Only a version still being validated changes; one archived meanwhile stays archived.
    ModelVersion.objects.filter(pk=version.pk, status=ModelVersion.Status.VALIDATING).update(
        status=status,
        status_reason=reason,
        failure_code=code,
        signature=signature or {},
        metrics=metrics or {},
        validated_at=timezone.now(),
        updated_at=timezone.now(),
    )
    version.refresh_from_db()
    logger.info("Version %s of %s is %s %s", version.number, version.model.name, version.status, reason)
    return version


def _fail_if_attempts_exhausted(version_id: int, claimable: Q) -> None:
    ModelVersion.objects.filter(
        claimable, pk=version_id, validation_attempts__gte=settings.VALIDATION_MAX_ATTEMPTS
    ).update(
        status=ModelVersion.Status.FAILED,
        status_reason=f"Validation did not finish after {settings.VALIDATION_MAX_ATTEMPTS} attempts.",
        failure_code="attempts_exhausted",
        validated_at=timezone.now(),
        updated_at=timezone.now(),
    )


# --- Aliases ---------------------------------------------------------------------------------


@transaction.atomic
def alias_set(*, model: MLModel, name: str, version: ModelVersion, user: User | None) -> ModelAlias:
    """Point alias `name` at a ready version, creating or moving it, and log the change."""
    MLModel.objects.select_for_update().get(pk=model.pk)  # serialise alias changes per model
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    if version.status != ModelVersion.Status.READY:
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
    _log_alias(alias.model, alias.name, ModelAliasHistory.Action.DELETE, alias.version, None, user)
    alias.delete()


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
