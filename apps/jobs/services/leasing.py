"""A running job's lease: renewed in the background while a worker works on the job."""

import contextvars
import datetime as dt
import logging
import threading
import uuid

from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.jobs.models import BatchJob

logger = logging.getLogger(__name__)


class JobLease:
    """Renews the job's lease every JOB_HEARTBEAT_SECONDS while the worker works. If the
    renewal finds the token gone (the job was taken over or finished), `lost` is set."""

    def __init__(self, job_id: uuid.UUID, token: str) -> None:
        self.job_id, self.token = job_id, token
        self.lost = False
        self._stopped = threading.Event()
        # Run in a copy of the caller's context, so its log lines carry the job's request id.
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name=f"lease-{job_id}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopped.wait(settings.JOB_HEARTBEAT_SECONDS):
                try:
                    renewed = BatchJob.objects.filter(
                        pk=self.job_id, lease_token=self.token, status=BatchJob.Status.RUNNING
                    ).update(
                        lease_expires_at=timezone.now() + dt.timedelta(seconds=settings.JOB_LEASE_SECONDS)
                    )
                except Exception:  # the database blinked: try again at the next beat
                    logger.warning("Lease renewal for job %s failed", self.job_id, exc_info=True)
                    continue
                if not renewed:
                    self.lost = True
                    return
        finally:
            connection.close()  # this thread's own connection

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)

    def release(self) -> None:
        """Let the reconciler hand the job on at its next pass instead of after the lease."""
        BatchJob.objects.filter(pk=self.job_id, lease_token=self.token).update(
            lease_expires_at=timezone.now()
        )
