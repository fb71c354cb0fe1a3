"""Batch-job tasks. Thin: take string ids, call the services, which own the logic."""

import socket

from django.db.models import Q

from apps.core.middleware import request_id_var
from apps.jobs import webhooks
from apps.jobs.models import BatchJob
from apps.jobs.services import job_run, reconcile_jobs
from workers.profiles import task


@task("batch_job")
def run_job(job_id: str) -> str:
    """Claim and run (or resume) a job. Idempotent: a duplicate or redelivered message
    finds the job claimed or finished and does nothing."""
    return job_run(job_id=job_id, worker=f"{socket.gethostname()}:{run_job.request.hostname or ''}")


@task("reconciler")
def reconcile() -> None:
    """Periodic (Celery beat): enqueue again the jobs owed a worker."""
    reconcile_jobs()


@task("webhook", name="workers.jobs.deliver_webhook")
def deliver_job_webhook(job_id: str, attempt: int) -> None:
    """One delivery attempt of a finished job's webhook; a failure schedules the next
    with backoff. Runs on the small-task queue, with short timeouts, so a slow or
    unreachable receiver never holds up inference."""
    job = BatchJob.objects.select_related("owner").filter(pk=job_id).first()
    if job is None or not job.webhook_url:
        return
    if job.webhook_deliveries.filter(Q(attempt__gte=attempt) | Q(succeeded=True)).exists():
        return  # a copy of this attempt (the reconciler's, or a redelivery) already ran
    token = request_id_var.set(job.request_id or "-")  # its log lines carry the job's request id
    try:
        delivery = webhooks.deliver(job=job, payload=webhooks.job_webhook_payload(job), attempt=attempt)
    finally:
        request_id_var.reset(token)
    if not delivery.succeeded and attempt < webhooks.max_attempts():
        deliver_job_webhook.apply_async(args=(job_id, attempt + 1), countdown=webhooks.retry_delay(attempt))
