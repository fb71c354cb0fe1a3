"""Reads of jobs and their results."""

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from apps.accounts.credentials import Credential
from apps.accounts.models import User
from apps.core.exceptions import NotFound
from apps.jobs.models import BatchJob, JobItem


def jobs_with_idempotency_key(*, user: User, key: str) -> QuerySet[BatchJob]:
    """The user's job made with this Idempotency-Key (one at most: the pair is unique)."""
    return BatchJob.objects.filter(owner=user, idempotency_key=key)


def job_list(*, user: User, filters: dict[str, Any], api_key: Credential | None = None) -> QuerySet[BatchJob]:
    """The jobs the caller may see (`BatchJob.objects.visible_to`), newest first, filtered."""
    jobs = BatchJob.objects.visible_to(user, api_key)
    if filters.get("status"):
        jobs = jobs.filter(status=filters["status"])
    if filters.get("model"):
        jobs = jobs.filter(model_name=filters["model"])
    if filters.get("since"):
        jobs = jobs.filter(created_at__gte=filters["since"])
    if filters.get("until"):
        jobs = jobs.filter(created_at__lt=filters["until"])
    return jobs.order_by("-created_at")


def job_get_visible(*, user: User, job_id: Any, api_key: Credential | None = None) -> BatchJob:
    """The job, or 404 when it does not exist, is someone else's (staff see all), or is on a
    model the caller's key is not granted."""
    job = BatchJob.objects.visible_to(user, api_key).filter(pk=job_id).first()
    if job is None:
        raise NotFound("No such job.", code="job_not_found")
    return job


def job_results(*, job: BatchJob, status: str | None = None) -> QuerySet[JobItem]:
    items = (
        job.items.exclude(status=JobItem.Status.PENDING)
        if status is None
        else job.items.filter(status=status)
    )
    return items.order_by("index")


def job_progress(job: BatchJob) -> dict[str, Any]:
    """Counts, speed and an estimate of the time left (from the last progress write)."""
    rate = job.items_per_second
    remaining = job.total - job.done
    eta = None
    if job.status == BatchJob.Status.RUNNING and rate:
        eta = round(remaining / rate, 1)
    elif job.status == BatchJob.Status.QUEUED:
        rate = None
    return {
        "total": job.total,
        "done": job.done,
        "succeeded": job.done - job.failed_items,
        "failed": job.failed_items,
        "percent": round(100 * job.done / job.total, 1) if job.total else 0.0,
        "items_per_second": rate,
        "eta_seconds": eta,
    }


def job_duration(job: BatchJob) -> float | None:
    if job.started_at is None:
        return None
    end = job.finished_at or timezone.now()
    return round((end - job.started_at).total_seconds(), 3)


def item_result(item: JobItem) -> dict[str, Any]:
    return {
        "index": item.index,
        "filename": item.filename,
        "status": item.status,
        "output": item.output or None,
        "error": {"code": item.error_code, "message": item.error_message} if item.error_code else None,
    }
