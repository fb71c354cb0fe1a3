"""Cancelling, deleting and retrying jobs (API and admin)."""

import logging

from django.db import transaction
from django.utils import timezone

from apps.core import metrics
from apps.core.exceptions import Conflict
from apps.jobs.models import BatchJob, JobItem
from apps.jobs.services import lifecycle, submitting

logger = logging.getLogger(__name__)


def job_cancel(*, job: BatchJob) -> BatchJob:
    """A queued job is cancelled at once; a running one is asked to stop, and its worker
    stops after the batch in hand (items already done keep their results)."""
    with transaction.atomic():
        locked = BatchJob.objects.select_for_update().get(pk=job.pk)
        if locked.is_finished:
            raise Conflict(
                f"The job is already {locked.status}.", code="job_finished", details={"status": locked.status}
            )
        now = timezone.now()
        locked.cancel_requested_at = locked.cancel_requested_at or now
        fields = ["cancel_requested_at"]
        if locked.status == BatchJob.Status.QUEUED:
            locked.status, locked.finished_at = BatchJob.Status.CANCELLED, now
            fields += ["status", "finished_at"]
            transaction.on_commit(lambda: metrics.JOBS.labels(BatchJob.Status.CANCELLED).inc())
            if locked.webhook_url:
                transaction.on_commit(lambda: lifecycle.enqueue_webhook(locked.pk))
        locked.save(update_fields=fields)
    return locked


def job_delete(*, job: BatchJob) -> None:
    """Delete a finished job and its stored inputs. Its audit rows (Prediction) stay."""
    with transaction.atomic():
        locked = BatchJob.objects.select_for_update().get(pk=job.pk)
        if not locked.is_finished:
            raise Conflict(
                f"The job is {locked.status}; cancel it before deleting it.",
                code="job_active",
                details={"status": locked.status},
            )
        names = list(locked.items.exclude(input_name="").values_list("input_name", flat=True))
        locked.delete()
    submitting.delete_inputs(names)


def job_retry(*, job: BatchJob) -> BatchJob:
    """Run a finished job again for its failed and unprocessed items (admin action)."""
    with transaction.atomic():
        locked = BatchJob.objects.select_for_update().get(pk=job.pk)
        if not locked.is_finished:
            raise Conflict(f"The job is {locked.status}.", code="job_active")
        # Failed items get a new result; their old audit rows stay and are unlinked.
        failed = JobItem.objects.filter(job=locked, status=JobItem.Status.FAILED)
        from apps.inference.models import Prediction

        Prediction.objects.filter(job_item__in=failed).update(job_item=None)
        failed.update(
            status=JobItem.Status.PENDING, output={}, error_code="", error_message="", finished_at=None
        )
        locked.status = BatchJob.Status.QUEUED
        locked.attempts = 0
        locked.cancel_requested_at = None
        locked.finished_at = None
        locked.error_code = locked.error_message = ""
        locked.enqueued_at = timezone.now()
        locked.save()
        transaction.on_commit(lambda: submitting.enqueue_job(locked.pk))
    return locked
