"""Validation of a stored version, run on a Celery worker: claim, validate, record.

The checks themselves are in apps/registry/validation.py (no ORM); this module
owns the version's status, its lease and the reconciler that re-enqueues owed work.
"""

import datetime as dt
import logging
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from apps.core.heartbeat import Heartbeat
from apps.registry.models import MLModel, ModelVersion
from apps.registry.storage import local_path, model_store
from apps.registry.validation import ModelFileError, validate_model_file

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024


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


class _LeaseHeartbeat(Heartbeat):
    """Renews a validating version's lease every VALIDATION_HEARTBEAT_SECONDS while its
    worker works, so the lease can be short: a worker that dies stops renewing, and
    the reconciler re-enqueues the version once the lease has expired."""

    def __init__(self, version_id: int) -> None:
        def renew() -> None:
            ModelVersion.objects.filter(pk=version_id, status=ModelVersion.Status.VALIDATING).update(
                validation_started_at=timezone.now()
            )

        super().__init__(renew, interval=settings.VALIDATION_HEARTBEAT_SECONDS, name=f"version {version_id}")


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
