"""A job's life on the worker side: claimed under a lease, settled once.

Exactly once per job run: a worker takes a job with one conditional UPDATE (queued,
or running with an expired lease, attempts left); it finishes the job only while it
still holds the lease token. A job nobody may claim any more is settled here too.
"""

import datetime as dt
import logging
import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.core import metrics
from apps.jobs.models import BatchJob, JobItem
from apps.jobs.services.leasing import JobLease

logger = logging.getLogger(__name__)


def _claimable(now: dt.datetime) -> Q:
    return Q(status=BatchJob.Status.QUEUED) | Q(status=BatchJob.Status.RUNNING, lease_expires_at__lt=now)


def job_claim(job_id: str, worker: str) -> str | None:
    """Take the job if it is queued or its lease has expired: one conditional UPDATE, so
    of two workers given the same job only one gets it."""
    token = uuid.uuid4().hex
    now = timezone.now()
    claimed = BatchJob.objects.filter(
        _claimable(now),
        pk=job_id,
        attempts__lt=settings.JOB_MAX_ATTEMPTS,
        cancel_requested_at__isnull=True,
    ).update(
        status=BatchJob.Status.RUNNING,
        lease_token=token,
        lease_expires_at=now + dt.timedelta(seconds=settings.JOB_LEASE_SECONDS),
        attempts=F("attempts") + 1,
        started_at=Coalesce(F("started_at"), now),
        worker=worker[:255],
    )
    return token if claimed else None


def job_settle_unclaimable(job_id: str) -> str:
    """A job nobody may claim any more: attempts exhausted (a poison job) → failed; a
    cancel asked of a job whose worker died → cancelled."""
    now = timezone.now()
    stuck = BatchJob.objects.filter(_claimable(now), pk=job_id)
    if stuck.filter(cancel_requested_at__isnull=False).exists():
        _finish_without_worker(job_id, BatchJob.Status.CANCELLED)
        return "cancelled"
    if stuck.filter(attempts__gte=settings.JOB_MAX_ATTEMPTS).exists():
        _finish_without_worker(
            job_id,
            BatchJob.Status.FAILED,
            code="attempts_exhausted",
            message=f"The job did not finish in {settings.JOB_MAX_ATTEMPTS} attempts.",
        )
        return "failed"
    return "not_claimed"


def job_counts(job_id: uuid.UUID) -> dict[str, int]:
    finished = ~Q(status=JobItem.Status.PENDING)
    return JobItem.objects.filter(job_id=job_id).aggregate(
        done=Count("pk", filter=finished), failed_items=Count("pk", filter=Q(status=JobItem.Status.FAILED))
    )


def job_finish(job: BatchJob, lease: JobLease, status: str, code: str = "", message: str = "") -> str:
    with transaction.atomic():
        locked = BatchJob.objects.select_for_update().filter(
            pk=job.pk, lease_token=lease.token, status=BatchJob.Status.RUNNING
        )
        if not locked.exists():
            return "lease_lost"
        _settle(job.pk, status, code, message, locked)
    return status


def _finish_without_worker(job_id: Any, status: str, code: str = "", message: str = "") -> None:
    with transaction.atomic():
        locked = BatchJob.objects.select_for_update().filter(_claimable(timezone.now()), pk=job_id)
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
    from workers.jobs import deliver_job_webhook

    try:
        deliver_job_webhook.apply_async(args=[str(job_id), attempt], retry=False)
    except Exception:
        logger.warning("Could not enqueue the webhook of job %s", job_id, exc_info=True)
