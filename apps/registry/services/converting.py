"""Uploads in other formats: checked and stored as the version's source (`converting`), then
converted to ONNX on the `conversion` queue, in a sandboxed child process, and validated.

    upload (web) ── formats.detect ──► version `converting`, source stored
    worker ── claim ── sandbox.run_conversion ──► ONNX stored, `pending` → validation as today
                                              └─► `failed` with the converter's reason

The worker never loads the upload itself; see apps/registry/intake/sandbox.py for what the
child may and may not do.
"""

import contextlib
import datetime as dt
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.core import tasks
from apps.core.heartbeat import Heartbeat
from apps.registry.intake import formats, sandbox
from apps.registry.models import ModelVersion
from apps.registry.storage import local_path, model_store, stored_name

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_MB = 1024 * 1024


# --- On upload (web) ----------------------------------------------------------------------


@contextlib.contextmanager
def upload_on_disk(file: File, suffix: str = "") -> Iterator[Path]:
    """A local path holding the upload's bytes: its temporary file when Django spooled it
    to disk, otherwise a temporary copy."""
    path = getattr(file, "temporary_file_path", None)
    try:
        if path is not None:
            yield Path(path())
            return
        with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
            file.seek(0)
            for chunk in file.chunks(_CHUNK):
                tmp.write(chunk)
            tmp.flush()
            yield Path(tmp.name)
    finally:
        file.seek(0)


def upload_format(file: File, *, declared: str | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The upload's format (told from its bytes, checked against what the upload says or its
    name's ending) and its conversion options; raises the 4xx for a refused upload."""
    declared = declared or formats.format_from_name(getattr(file, "name", "") or "")
    if declared == formats.ONNX:
        return declared, {}  # checked as ONNX, exactly as before other formats were taken
    limits = formats.ArchiveLimits(
        max_members=settings.CONVERSION_ARCHIVE_MAX_MEMBERS,
        max_unpacked_bytes=settings.CONVERSION_ARCHIVE_MAX_UNPACKED_MB * _MB,
        max_ratio=settings.CONVERSION_ARCHIVE_MAX_RATIO,
    )
    with upload_on_disk(file) as path:
        actual = formats.detect(path, limits)
    formats.check_declared(declared, actual)
    if actual == formats.ONNX:
        return actual, {}
    chosen = {
        "input_signature": formats.parse_input_signature(options.get("input_signature"), actual),
        "signature_name": options.get("signature_name") or None,
    }
    return actual, {key: value for key, value in chosen.items() if value}


def store_source(version: ModelVersion, file: File, fmt: str, options: dict[str, Any]) -> str:
    """Keep the upload as the version's source, `converting`; the stored name."""
    version.status = ModelVersion.Status.CONVERTING
    version.converted_from = {"format": fmt, "options": options, "source_size_bytes": version.size_bytes}
    version.source.save(formats.SUFFIXES[fmt], file, save=False)
    return stored_name(version.source.name)


def enqueue_version_conversion(version: ModelVersion) -> None:
    try:
        tasks.enqueue(tasks.CONVERT_MODEL_VERSION, str(version.pk))
    except Exception:  # the broker is down: the reconciler enqueues it later
        logger.exception("Could not enqueue conversion of version %s", version.pk)


# --- On the worker ------------------------------------------------------------------------


def _claimable(now: dt.datetime) -> Q:
    """Converting and not held: never claimed, or its lease expired (the worker died)."""
    expired = now - dt.timedelta(seconds=settings.CONVERSION_LEASE_SECONDS)
    return Q(status=ModelVersion.Status.CONVERTING) & (
        Q(conversion_started_at__isnull=True) | Q(conversion_started_at__lt=expired)
    )


def _claim(version_id: int) -> bool:
    now = timezone.now()
    rows = ModelVersion.objects.filter(
        _claimable(now), pk=version_id, conversion_attempts__lt=settings.CONVERSION_MAX_ATTEMPTS
    )
    return bool(rows.update(conversion_started_at=now, conversion_attempts=F("conversion_attempts") + 1))


def model_version_convert(*, version_id: int) -> ModelVersion | None:
    """Convert a version's source to ONNX: `converting` → `pending` (then validation, as for
    an ONNX upload) | `failed` (the converter's code and reason).

    Idempotent: a version not converting, or converting under another worker's lease, is left
    alone. Attempts are capped: a source that kills its worker every time ends `failed`."""
    if not _claim(version_id):
        _fail_if_attempts_exhausted(version_id)
        return ModelVersion.objects.filter(pk=version_id).first()
    version = ModelVersion.objects.select_related("model").get(pk=version_id)
    heartbeat = Heartbeat(
        lambda: _renew(version_id),
        interval=settings.CONVERSION_HEARTBEAT_SECONDS,
        name=f"conversion {version_id}",
    )
    scratch = sandbox.scratch_folder()
    try:
        with _source_on_disk(stored_name(version.source.name)) as source:
            outcome = sandbox.run_conversion(
                _job(version), source, _limits(), network=_network(), scratch=scratch
            )
        if outcome.ok:
            return _finish_converted(version, outcome)
        return _finish_failed(version, outcome.code, outcome.message, sandbox_info=outcome.sandbox)
    except Exception as exc:  # an environment problem (store, disk): record it, never leave it hanging
        logger.exception("Conversion of version %s crashed", version_id)
        return _finish_failed(version, "conversion_error", f"Conversion error: {exc}")
    finally:
        heartbeat.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def _renew(version_id: int) -> bool:
    rows = ModelVersion.objects.filter(pk=version_id, status=ModelVersion.Status.CONVERTING)
    return bool(rows.update(conversion_started_at=timezone.now()))


def _job(version: ModelVersion) -> dict[str, Any]:
    return {
        "format": version.converted_from["format"],
        **version.converted_from.get("options", {}),
        "atol": settings.CONVERSION_PARITY_ATOL,
        "random_checks": settings.CONVERSION_RANDOM_CHECKS,
        "seed": 0,
        "blocked_modules": list(settings.CONVERSION_CHILD_BLOCKED_MODULES),
    }


def _limits() -> sandbox.Limits:
    return sandbox.Limits(
        memory_bytes=settings.CONVERSION_MEMORY_LIMIT_MB * _MB,
        cpu_seconds=settings.CONVERSION_CPU_SECONDS,
        file_bytes=settings.CONVERSION_FILE_LIMIT_MB * _MB,
        wall_seconds=settings.CONVERSION_WALL_SECONDS,
    )


def _network() -> str:
    return settings.CONVERSION_NETWORK_ISOLATION


@contextlib.contextmanager
def _source_on_disk(name: str) -> Iterator[Path]:
    try:
        yield local_path(name)
    except NotImplementedError:  # an S3-compatible store: a temporary copy
        with model_store.open(name, "rb") as stored, tempfile.NamedTemporaryFile() as tmp:
            shutil.copyfileobj(stored, tmp, _CHUNK)
            tmp.flush()
            yield Path(tmp.name)


def _finish_converted(version: ModelVersion, outcome: sandbox.Outcome) -> ModelVersion:
    """Store the ONNX file and hand the version to validation, unless it was archived meanwhile."""
    converted_from = {**version.converted_from, **outcome.report, "sandbox": outcome.sandbox}
    assert outcome.onnx_path is not None  # a conversion that succeeded wrote its file
    with open(outcome.onnx_path, "rb") as onnx_file:
        version.artifact.save("model.onnx", File(onnx_file), save=False)
    stored = stored_name(version.artifact.name)
    with transaction.atomic():
        updated = ModelVersion.objects.filter(pk=version.pk, status=ModelVersion.Status.CONVERTING).update(
            artifact=stored,
            size_bytes=model_store.size(stored),
            converted_from=converted_from,
            status=ModelVersion.Status.PENDING,
            updated_at=timezone.now(),
        )
        if updated:
            transaction.on_commit(lambda: _enqueue_validation(version.pk))  # as an ONNX upload's
    if not updated:
        model_store.delete(stored)
    version.refresh_from_db()
    parity = outcome.report.get("parity", {})
    logger.info("Version %s converted (max abs diff %s)", version, parity.get("max_abs_diff"))
    return version


def _enqueue_validation(version_id: int) -> None:
    try:
        tasks.enqueue(tasks.VALIDATE_MODEL_VERSION, str(version_id))
    except Exception:  # pending: the validation reconciler re-enqueues it
        logger.exception("Could not enqueue validation of version %s", version_id)


def _finish_failed(
    version: ModelVersion, code: str, reason: str, *, sandbox_info: dict | None = None
) -> ModelVersion:
    converted_from = {**version.converted_from, "error": {"code": code, "message": reason}}
    if sandbox_info:
        converted_from["sandbox"] = sandbox_info
    ModelVersion.objects.filter(pk=version.pk, status=ModelVersion.Status.CONVERTING).update(
        status=ModelVersion.Status.FAILED,
        status_reason=reason,
        failure_code=code[:40],
        converted_from=converted_from,
        validated_at=timezone.now(),
        updated_at=timezone.now(),
    )
    version.refresh_from_db()
    logger.info("Conversion of %s failed: %s (%s)", version, reason, code)
    return version


def _fail_if_attempts_exhausted(version_id: int) -> None:
    """Claimable but out of attempts (its converter killed the worker each time) → `failed`."""
    ModelVersion.objects.filter(
        _claimable(timezone.now()), pk=version_id, conversion_attempts__gte=settings.CONVERSION_MAX_ATTEMPTS
    ).update(
        status=ModelVersion.Status.FAILED,
        status_reason=f"Conversion did not finish after {settings.CONVERSION_MAX_ATTEMPTS} attempts.",
        failure_code="attempts_exhausted",
        validated_at=timezone.now(),
        updated_at=timezone.now(),
    )


def reconcile_conversions() -> list[int]:
    """Re-enqueue conversions owed: never claimed for a grace period (a lost message) or
    under an expired lease (a dead worker). Run by the registry reconciler (Celery beat)."""
    now = timezone.now()
    grace = now - dt.timedelta(seconds=settings.VALIDATION_PENDING_GRACE_SECONDS)
    owed = ModelVersion.objects.filter(_claimable(now)).filter(
        Q(conversion_started_at__isnull=False) | Q(created_at__lt=grace)
    )
    ids = list(owed.values_list("pk", flat=True)[:100])
    for version_id in ids:
        tasks.enqueue(tasks.CONVERT_MODEL_VERSION, str(version_id))
    return ids
