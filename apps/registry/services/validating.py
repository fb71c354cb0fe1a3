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
from django.db.models import Q
from django.utils import timezone

from apps.core import tasks
from apps.core.claims import ClaimRule, Lease
from apps.core.heartbeat import Heartbeat
from apps.registry.models import MLModel, ModelVersion
from apps.registry.storage import local_path, model_store, stored_name
from apps.registry.validation import ModelFileError, ValidationReport, validate_model_file

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024

# The lease is `validation_started_at`, stamped at the claim and at each renewal: a version
# `validating` whose stamp is older than VALIDATION_LEASE_SECONDS has lost its worker.
VALIDATION_CLAIM = ClaimRule(
    model=ModelVersion,
    queued=ModelVersion.Status.PENDING,
    running=ModelVersion.Status.VALIDATING,
    max_attempts_setting="VALIDATION_MAX_ATTEMPTS",
    lease_seconds_setting="VALIDATION_LEASE_SECONDS",
    attempts_field="validation_attempts",
    lease_field="validation_started_at",
    lease_stamp="renewed",
    token_field=None,
    started_field=None,
)


# --- Validation (runs on a worker) ------------------------------------------------------------


def model_version_validate(*, version_id: int) -> ModelVersion | None:
    """Validate a version: `pending` (or an interrupted `validating`) → `ready` | `failed`.

    Idempotent: a version already ready, failed or archived is left alone, so a
    redelivered task does nothing twice. Attempts are capped, so a model that
    kills its worker every time ends `failed` instead of looping.
    """
    # Claimable: pending, or validating under an expired lease (its worker died). A
    # duplicate delivery while another worker holds the lease finds nothing to claim.
    lease = VALIDATION_CLAIM.claim(version_id)
    if lease is None:
        _fail_if_attempts_exhausted(version_id)
        return ModelVersion.objects.filter(pk=version_id).first()

    version = ModelVersion.objects.select_related("model").get(pk=version_id)
    heartbeat = validation_heartbeat(lease)  # renews the lease until validation ends
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
    return _finish_validation(lease, version, **outcome)


def validation_heartbeat(lease: Lease) -> Heartbeat:
    """Renews a validating version's lease every VALIDATION_HEARTBEAT_SECONDS while its
    worker works, so the lease can be short: a worker that dies stops renewing, and
    the reconciler re-enqueues the version once the lease has expired. Ends when the
    version is no longer `validating` (archived meanwhile)."""
    return Heartbeat(
        lambda: VALIDATION_CLAIM.renew(lease),
        interval=settings.VALIDATION_HEARTBEAT_SECONDS,
        name=f"version {lease.pk}",
    )


def versions_to_reenqueue() -> list[int]:
    """Versions whose validation is owed: pending for longer than the enqueue grace period
    (a lost message or a failed enqueue), or validating under an expired lease (a dead worker)."""
    now = timezone.now()
    grace = now - dt.timedelta(seconds=settings.VALIDATION_PENDING_GRACE_SECONDS)
    stale_pending = Q(status=ModelVersion.Status.PENDING, created_at__lt=grace)
    owed = stale_pending | VALIDATION_CLAIM.lease_expired(now)
    return list(ModelVersion.objects.filter(owed).values_list("pk", flat=True)[:100])


def reconcile_versions() -> list[int]:
    """Re-enqueue every version whose validation is owed (run periodically by Celery beat)."""
    owed = versions_to_reenqueue()
    for version_id in owed:
        tasks.enqueue(tasks.VALIDATE_MODEL_VERSION, str(version_id))
    if owed:
        logger.info("Re-enqueued validation of versions %s", owed)
    return owed


def _run_validation(version: ModelVersion) -> ValidationReport:
    crop = version.preprocessing.get("crop") or version.preprocessing.get("resize")
    label_count = len(version.labels) if version.model.task == MLModel.Task.IMAGE_CLASSIFICATION else None
    with _artifact_on_disk(stored_name(version.artifact.name)) as path:
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
    lease: Lease,
    version: ModelVersion,
    status: str,
    *,
    reason: str = "",
    code: str = "",
    signature: dict | None = None,
    metrics: dict | None = None,
) -> ModelVersion:
    """`validating` → `status` (ready or failed). Only a version still being validated
    changes; one archived meanwhile stays archived."""
    VALIDATION_CLAIM.held(lease).update(
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


def _fail_if_attempts_exhausted(version_id: int) -> None:
    """`pending` (or `validating` under an expired lease) with no attempts left → `failed`
    (`attempts_exhausted`): a model that kills its worker every time stops here."""
    VALIDATION_CLAIM.exhausted(version_id).update(
        status=ModelVersion.Status.FAILED,
        status_reason=f"Validation did not finish after {VALIDATION_CLAIM.max_attempts} attempts.",
        failure_code="attempts_exhausted",
        validated_at=timezone.now(),
        updated_at=timezone.now(),
    )
