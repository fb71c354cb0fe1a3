"""Running a job on a worker: claim, process in batches under a lease, finish; and the
reconciler that makes a lost message, a dead worker or a broker restart cost a delay.

Exactly once per item: an item leaves `pending` only in a transaction that holds
the job row locked under this worker's lease token, and its audit `Prediction`
is unique per item. A worker that lost its lease (it stalled and another worker
took over) finds the token changed and stops without writing.
"""

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.core import metrics
from apps.core.exceptions import ApplicationError, UnprocessableInput
from apps.core.middleware import request_id_var
from apps.inference import postprocessing, preprocessing, tensors
from apps.inference import services as inference
from apps.inference.audit import insert_predictions
from apps.inference.models import Prediction
from apps.inference.sessions import loaded_model
from apps.jobs.models import BatchJob, JobItem
from apps.jobs.services.leasing import JobLease
from apps.jobs.services.lifecycle import job_claim, job_counts, job_finish, job_settle_unclaimable
from apps.registry.models import MLModel, ModelVersion
from apps.registry.storage import model_store

logger = logging.getLogger(__name__)


# --- Running ------------------------------------------------------------------------------------------


def job_run(*, job_id: str, worker: str = "") -> str:
    """Run (or resume) a job; returns what happened: `succeeded`, `cancelled`, `failed`,
    `not_claimed` (another worker has it, or it is finished) or `lease_lost`."""
    token = job_claim(job_id, worker)
    if token is None:
        return job_settle_unclaimable(job_id)
    job = BatchJob.objects.select_related("model_version__model").get(pk=job_id)
    # The worker's log lines carry the id of the request that submitted the job.
    request_id = request_id_var.set(job.request_id or "-")
    lease = JobLease(job.pk, token)
    try:
        return _process(job, lease)
    except BaseException as exc:
        # A crash (a bug, a time limit, a lost database): keep the reason, give the lease
        # back so the reconciler resumes the job soon; attempts are capped at the claim.
        logger.exception("Job %s crashed on attempt %s", job_id, job.attempts + 1)
        BatchJob.objects.filter(pk=job.pk, lease_token=token).update(
            lease_expires_at=timezone.now(),
            error_code="worker_error",
            error_message=f"Attempt crashed: {type(exc).__name__}: {exc}"[:1000],
        )
        raise
    finally:
        lease.stop()
        request_id_var.reset(request_id)


@dataclass
class _Result:
    item: JobItem
    status: str = JobItem.Status.SUCCEEDED
    output: dict[str, Any] = field(default_factory=dict)
    audit_output: dict[str, Any] = field(default_factory=dict)
    error_code: str = ""
    error_message: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def fail(self, code: str, message: str) -> None:
        self.status, self.error_code, self.error_message = JobItem.Status.FAILED, code, message[:1000]
        self.output = self.audit_output = {}


def _process(job: BatchJob, lease: JobLease) -> str:
    version = job.model_version
    if version is None:
        return job_finish(
            job, lease, BatchJob.Status.FAILED, "version_deleted", "The pinned version was deleted."
        )
    try:
        loaded = loaded_model(version)
    except Exception as exc:
        logger.exception("Job %s: could not load version %s", job.pk, version.pk)
        return job_finish(
            job, lease, BatchJob.Status.FAILED, "model_load_failed", f"Could not load model: {exc}"
        )
    progress = _Progress(job)
    while True:
        if lease.lost:
            return "lease_lost"
        pending = list(
            JobItem.objects.filter(job=job, status=JobItem.Status.PENDING).order_by("index")[
                : settings.JOB_BATCH_SIZE
            ]
        )
        if not pending:
            return job_finish(job, lease, BatchJob.Status.SUCCEEDED)
        started = time.perf_counter()
        results = _compute(job, version, loaded, pending)
        elapsed_ms = (time.perf_counter() - started) * 1000
        with transaction.atomic():
            current = (
                BatchJob.objects.select_for_update()
                .filter(pk=job.pk, lease_token=lease.token, status=BatchJob.Status.RUNNING)
                .values("cancel_requested_at")
                .first()
            )
            if current is None:
                return "lease_lost"
            _write(job, results, elapsed_ms / len(results))
            progress.record(results)
        if current["cancel_requested_at"] is not None:
            return job_finish(job, lease, BatchJob.Status.CANCELLED)


class _Progress:
    """Counts and speed, written to the job row at most once per JOB_PROGRESS_INTERVAL_SECONDS."""

    def __init__(self, job: BatchJob) -> None:
        self.job = job
        self.started = time.monotonic()
        self.processed = 0
        self.flushed_at = 0.0

    def record(self, results: list[_Result]) -> None:
        self.processed += len(results)
        now = time.monotonic()
        if now - self.flushed_at < settings.JOB_PROGRESS_INTERVAL_SECONDS:
            return
        self.flushed_at = now
        counts = job_counts(self.job.pk)
        rate = self.processed / max(now - self.started, 1e-6)
        BatchJob.objects.filter(pk=self.job.pk).update(
            **counts, items_per_second=round(rate, 2), progress_at=timezone.now()
        )


def _compute(job: BatchJob, version: ModelVersion, loaded: Any, items: list[JobItem]) -> list[_Result]:
    results = [_Result(item=item, meta=_meta(job, item)) for item in items]
    if job.kind == "tensor":
        for result in results:
            _compute_tensor(version, loaded, result)
        return results
    stage = _Stages(job)
    arrays: dict[int, np.ndarray] = {}
    for position, result in enumerate(results):
        array = _preprocess_image(version, result)
        if array is not None:
            arrays[position] = array
    stage.done("preprocess")
    by_shape: dict[tuple, list[int]] = {}
    for position, array in arrays.items():
        by_shape.setdefault(array.shape, []).append(position)
    spec = version.signature.get("inputs", [{}])[0]
    for positions in by_shape.values():  # one model call per batch (per shape, if sizes differ)
        batch = np.stack([arrays[p] for p in positions])
        metrics.BATCH_SIZE.labels("job").observe(len(positions))
        try:
            outputs = inference._infer_unlimited(
                loaded, {spec["name"]: batch}, batched=True, dynamic=version.signature.get("dynamic_batch")
            )
        except UnprocessableInput as exc:
            for p in positions:
                results[p].fail(exc.code, exc.message)
            continue
        finally:
            stage.done("infer")
        _postprocess_images(version, job.top_k, loaded, outputs, [results[p] for p in positions])
        stage.done("postprocess")
    return results


class _Stages:
    """Observes mlplatform_inference_seconds per stage of a batch."""

    def __init__(self, job: BatchJob) -> None:
        self.labels = (job.model_name, str(job.version_number))
        self.last = time.perf_counter()

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        metrics.INFERENCE_SECONDS.labels(*self.labels, stage).observe(now - self.last)
        self.last = now


def _meta(job: BatchJob, item: JobItem) -> dict[str, Any]:
    meta: dict[str, Any] = {"kind": job.kind, "size": item.size, "job": str(job.pk), "index": item.index}
    if item.content_type:
        meta["content_type"] = item.content_type
    if item.filename:
        meta["filename"] = item.filename[:200]
    return meta


def _read(result: _Result) -> bytes | None:
    try:
        with model_store.open(result.item.input_name, "rb") as stored:
            return stored.read()
    except (OSError, ValueError):
        result.fail("input_missing", "The stored input could not be read.")
        return None


def _preprocess_image(version: ModelVersion, result: _Result) -> np.ndarray | None:
    inputs = version.signature.get("inputs", [])
    if len(inputs) != 1:
        result.fail("images_not_supported", f"This model takes {len(inputs)} inputs; send named tensors.")
        return None
    data = _read(result)
    if data is None:
        return None
    try:
        decoded = preprocessing.decode_image(data, max_pixels=settings.MAX_IMAGE_PIXELS)
        result.meta.update(format=decoded.format, width=decoded.width, height=decoded.height)
        array = preprocessing.image_to_array(
            decoded.image, version.preprocessing, max_pixels=settings.MAX_IMAGE_PIXELS
        )
        tensors.check_shape(inputs[0]["name"], array[None], inputs[0]["shape"])
    except ApplicationError as exc:
        result.fail(exc.code, exc.message)
        return None
    except Exception as exc:  # Pillow can raise almost anything on hostile files: the item's fault
        result.fail("invalid_image", f"The input could not be decoded: {type(exc).__name__}.")
        return None
    return array


def _postprocess_images(
    version: ModelVersion, k: int, loaded: Any, outputs: dict[str, np.ndarray], results: list[_Result]
) -> None:
    if version.model.task == MLModel.Task.IMAGE_CLASSIFICATION:
        rows = postprocessing.top_k(
            outputs[loaded.output_names[0]],
            version.labels,
            k,
            apply_softmax=version.preprocessing.get("softmax", False),
        )
        for result, row in zip(results, rows, strict=True):
            result.output = result.audit_output = {"top_k": row}
        return
    for i, result in enumerate(results):
        result.output = {
            "outputs": {n: postprocessing.tensor_to_json(a[i : i + 1]) for n, a in outputs.items()}
        }
        result.audit_output = {
            "outputs": {n: postprocessing.tensor_summary(a[i : i + 1]) for n, a in outputs.items()}
        }


def _compute_tensor(version: ModelVersion, loaded: Any, result: _Result) -> None:
    data = _read(result)
    if data is None:
        return
    try:
        inputs = json.loads(data)
        result.meta["names"] = sorted(inputs)
        feeds = tensors.parse_tensor_inputs(
            inputs,
            version.signature.get("inputs", []),
            non_finite=version.preprocessing.get("non_finite", "reject"),
        )
        result.meta["tensors"] = {
            n: {"shape": list(a.shape), "dtype": a.dtype.name} for n, a in feeds.items()
        }
        outputs = inference._infer_unlimited(loaded, feeds, batched=False, dynamic=False)
    except ApplicationError as exc:
        result.fail(exc.code, exc.message)
        return
    except (ValueError, TypeError) as exc:
        result.fail("invalid_tensor", f"The input could not be read: {exc}")
        return
    result.output = {"outputs": {n: postprocessing.tensor_to_json(a) for n, a in outputs.items()}}
    result.audit_output = {"outputs": {n: postprocessing.tensor_summary(a) for n, a in outputs.items()}}


def _write(job: BatchJob, results: list[_Result], latency_ms: float) -> None:
    """Each item's result and its audit row, in bulk (inside the lease-checked transaction)."""
    now = timezone.now()
    for result in results:
        item = result.item
        item.status, item.output = result.status, result.output
        item.error_code, item.error_message, item.finished_at = result.error_code, result.error_message, now
    _update_items([r.item for r in results])
    for status in (JobItem.Status.SUCCEEDED, JobItem.Status.FAILED):
        count = sum(1 for r in results if r.status == status)
        if count:
            # Counted on commit: a transaction rolled back (a lost lease) counts nothing.
            labels = (job.model_name, str(job.version_number), "job", status)
            transaction.on_commit(lambda labels=labels, count=count: _count_items(labels, count))
    insert_predictions(
        [
            {
                "created_at": now,
                "user_id": job.owner_id,
                "api_key_id": job.api_key_id,
                "model_version_id": job.model_version_id,
                "model_name": job.model_name,
                "version_number": job.version_number,
                "alias": job.alias,
                "source": Prediction.Source.JOB,
                "input_sha256": r.item.input_sha256,
                "input_meta": r.meta,
                "output": r.audit_output,
                "status": r.status,
                "error_code": r.error_code,
                "error_message": r.error_message,
                "latency_ms": round(latency_ms, 3),
                "request_id": job.request_id,
                "client_address": job.client_address,
                "job_item_id": r.item.pk,
            }
            for r in results
        ]
    )


_ITEM_FIELDS = ("status", "output", "error_code", "error_message", "finished_at")


def _update_items(items: list[JobItem]) -> None:
    """One prepared UPDATE per item, sent with executemany: several times cheaper than the
    ORM's bulk_update, whose CASE WHEN expressions cost more CPU than the database does
    (bench/jobs.py: 30 ms against 4 ms per batch of 32)."""
    fields = [JobItem._meta.get_field(name) for name in _ITEM_FIELDS]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    sql = f"UPDATE {quote(JobItem._meta.db_table)} SET {assignments} WHERE {quote('id')} = %s"  # noqa: S608
    params = [
        [f.get_db_prep_save(getattr(item, f.attname), connection) for f in fields] + [item.pk]
        for item in items
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _count_items(labels: tuple[str, str, str, str], count: int) -> None:
    metrics.PREDICTIONS.labels(*labels).inc(count)
    metrics.JOB_ITEMS.labels(labels[3]).inc(count)
