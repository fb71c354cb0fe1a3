"""Batch-job services: submitting (web), running (workers), managing (web and admin)."""

from apps.jobs.services.managing import job_cancel, job_delete, job_retry
from apps.jobs.services.reconciling import reconcile_jobs
from apps.jobs.services.running import job_run
from apps.jobs.services.submitting import JobSubmission, enqueue_job, job_admit, job_submit

__all__ = [
    "JobSubmission",
    "enqueue_job",
    "job_admit",
    "job_cancel",
    "job_delete",
    "job_retry",
    "job_run",
    "job_submit",
    "reconcile_jobs",
]
