"""The reconciler (Celery beat): a lost message, a dead worker or a broker restart costs a
delay, never a job or a webhook. See docs/workers.md."""

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.core import metrics
from apps.jobs import webhooks
from apps.jobs.models import BatchJob, WebhookDelivery
from apps.jobs.services import lifecycle, submitting
from apps.jobs.services.leasing import JOB_CLAIM

logger = logging.getLogger(__name__)


def reconcile_jobs() -> dict[str, list[str]]:
    """Periodic (Celery beat): enqueue again every job owed a worker — queued (a lost
    message, a broker restart, a failed enqueue) or running under an expired lease (a dead
    worker), and not enqueued in the last JOB_QUEUED_GRACE_SECONDS. A job out of attempts
    ends `failed`; a cancelled one whose worker died ends `cancelled`."""
    now = timezone.now()
    grace = now - dt.timedelta(seconds=settings.JOB_QUEUED_GRACE_SECONDS)
    owed = BatchJob.objects.filter(JOB_CLAIM.waiting(now), enqueued_at__lt=grace)
    owed = owed.order_by("created_at")
    report: dict[str, list[str]] = {"enqueued": [], "settled": [], "webhooks": []}
    if _messages_cover_queued_jobs():
        # Every queued job can still have its message in the queue (a backlog, not a loss):
        # enqueue only the running jobs whose worker died.
        owed = owed.filter(status=BatchJob.Status.RUNNING)
    for job_id in owed.values_list("pk", flat=True)[:500]:
        if lifecycle.job_settle_unclaimable(str(job_id)) != "not_claimed":
            report["settled"].append(str(job_id))
            continue
        # Stamped first: a job is enqueued again at most once per grace period.
        BatchJob.objects.filter(pk=job_id).update(enqueued_at=timezone.now())
        submitting.enqueue_job(job_id)
        report["enqueued"].append(str(job_id))
    report["webhooks"] = _owed_webhooks(now, grace)
    if report["enqueued"] or report["settled"] or report["webhooks"]:
        logger.info("Job reconciler: %s", report)
    return report


def _owed_webhooks(now: dt.datetime, grace: dt.datetime) -> list[str]:
    """Finished jobs (in the last day) owed a webhook attempt whose message was lost (say,
    Redis was down or restarted): the first attempt never happened, or a failed attempt's
    retry is overdue by more than the grace period. Webhooks are at least once; the
    delivery id header lets a receiver drop a duplicate."""
    recent = BatchJob.objects.filter(
        status__in=BatchJob.FINISHED, finished_at__lt=grace, finished_at__gt=now - dt.timedelta(days=1)
    ).exclude(webhook_url="")
    owed = [
        (str(pk), 1)
        for pk in recent.filter(webhook_deliveries__isnull=True).values_list("pk", flat=True)[:100]
    ]
    grace_seconds = (now - grace).total_seconds()
    for delivery in _latest_deliveries(recent):
        if delivery.succeeded or delivery.attempt >= webhooks.max_attempts():
            continue
        due = delivery.created_at + dt.timedelta(
            seconds=webhooks.retry_delay(delivery.attempt) + grace_seconds
        )
        if due < now:
            owed.append((str(delivery.job_id), delivery.attempt + 1))
    for job_id, attempt in owed[:100]:
        lifecycle.enqueue_webhook(job_id, attempt)
    return [job_id for job_id, _ in owed[:100]]


def _latest_deliveries(jobs: Any) -> list[WebhookDelivery]:
    latest: dict[Any, WebhookDelivery] = {}
    for delivery in WebhookDelivery.objects.filter(job__in=jobs).order_by("job_id", "attempt"):
        latest[delivery.job_id] = delivery
    return list(latest.values())


def _messages_cover_queued_jobs() -> bool:
    """True when the broker holds at least one message per queued job (Redis only)."""
    depths = metrics.broker_queue_depths(settings.CELERY_BROKER_URL, ["jobs"])
    if depths is None:
        return False
    return depths[0] >= BatchJob.objects.filter(status=BatchJob.Status.QUEUED).count()
