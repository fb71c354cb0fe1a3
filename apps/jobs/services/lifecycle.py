"""A job's life on the worker side: claimed under a lease, settled once.

Exactly once per job run: a worker takes a job with one conditional UPDATE (queued,
or running with an expired lease, attempts left: `JOB_CLAIM`, apps/core/claims.py); it
finishes the job only while it still holds the lease token. A job nobody may claim any
more is settled here too.
"""

import logging
import uuid
from typing import Any

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from apps.core import metrics, tasks
from apps.jobs.models import BatchJob, JobItem
from apps.jobs.services.leasing import JOB_CLAIM, JobLease

logger = logging.getLogger(__name__)


def job_claim(job_id: str, worker: str) -> str | None:
    """Take the job: `queued` (or `running` under an expired lease) → `running`, with attempts
    left and no cancel asked. One conditional UPDATE, so of two workers given the same job
    only one gets it. Returns the lease token, or None when not claimed."""
    lease = JOB_CLAIM.claim(job_id, where=Q(cancel_requested_at__isnull=True), worker=worker[:255])
    return lease.token if lease else None


def job_settle_unclaimable(job_id: str) -> str:
    """A job nobody may claim any more (`queued`, or `running` under an expired lease):
    a cancel asked of it (its worker died) → `cancelled`; attempts exhausted (a poison
    job) → `failed`. Returns the new status, or `not_claimed` when neither applies."""
    stuck = BatchJob.objects.filter(JOB_CLAIM.waiting(), pk=job_id)
    if stuck.filter(cancel_requested_at__isnull=False).exists():
        _finish_without_worker(job_id, BatchJob.Status.CANCELLED)
        return "cancelled"
    if JOB_CLAIM.exhausted(job_id).exists():
        _finish_without_worker(
            job_id,
            BatchJob.Status.FAILED,
            code="attempts_exhausted",
            message=f"The job did not finish in {JOB_CLAIM.max_attempts} attempts.",
        )
        return "failed"
    return "not_claimed"


def job_counts(job_id: uuid.UUID) -> dict[str, int]:
    finished = ~Q(status=JobItem.Status.PENDING)
    return JobItem.objects.filter(job_id=job_id).aggregate(
        done=Count("pk", filter=finished), failed_items=Count("pk", filter=Q(status=JobItem.Status.FAILED))
    )


def job_finish(job: BatchJob, lease: JobLease, status: str, code: str = "", message: str = "") -> str:
    """`running` under this worker's lease → `status` (succeeded, failed, cancelled), with
    the final counts; `lease_lost` (and nothing written) when the lease is no longer held."""
    with transaction.atomic():
        locked = JOB_CLAIM.held(lease.held).select_for_update()
        if not locked.exists():
            return "lease_lost"
        _settle(job.pk, status, code, message, locked)
    return status


def _finish_without_worker(job_id: Any, status: str, code: str = "", message: str = "") -> None:
    with transaction.atomic():
        locked = BatchJob.objects.select_for_update().filter(JOB_CLAIM.waiting(), pk=job_id)
        if locked.exists():
            _settle(job_id, status, code, message, locked)


def _settle(job_id: Any, status: str, code: str, message: str, locked: Any) -> None:
    now = timezone.now()
    job = BatchJob.objects.get(pk=job_id)
    elapsed = (now - job.started_at).total_seconds() if job.started_at else None
    counts = job_counts(job_id)
    changes: dict[str, Any] = {
        **counts,
        "status": status,
        "finished_at": now,
        "lease_token": "",
        "lease_expires_at": None,
        "progress_at": now,
    }
    if elapsed:
        changes["items_per_second"] = round(counts["done"] / elapsed, 2)
    if code or status != BatchJob.Status.FAILED:
        changes.update(error_code=code, error_message=message[:1000])
    locked.update(**changes)
    transaction.on_commit(lambda: metrics.JOBS.labels(status).inc())
    if job.webhook_url:
        transaction.on_commit(lambda: enqueue_webhook(job_id))
    logger.info("Job %s %s: %s done, %s failed", job_id, status, counts["done"], counts["failed_items"])


def enqueue_webhook(job_id: Any, attempt: int = 1) -> None:
    """Ring the webhook's doorbell; a broker that is down costs a delay (the reconciler
    enqueues owed webhooks again), never a webhook."""
    try:
        tasks.enqueue(tasks.DELIVER_JOB_WEBHOOK, str(job_id), attempt, retry=False)
    except Exception:
        logger.warning("Could not enqueue the webhook of job %s", job_id, exc_info=True)
