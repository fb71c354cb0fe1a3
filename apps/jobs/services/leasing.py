"""A running job's lease: renewed in the background while a worker works on the job."""

import datetime as dt
import uuid

from django.conf import settings
from django.utils import timezone

from apps.core.heartbeat import Heartbeat
from apps.jobs.models import BatchJob


class JobLease:
    """Renews the job's lease every JOB_HEARTBEAT_SECONDS while the worker works. If the
    renewal finds the token gone (the job was taken over or finished), `lost` is set."""

    def __init__(self, job_id: uuid.UUID, token: str) -> None:
        self.job_id, self.token = job_id, token
        self.lost = False
        self._heartbeat = Heartbeat(
            self._renew, interval=settings.JOB_HEARTBEAT_SECONDS, name=f"job {job_id}"
        )

    def _renew(self) -> bool:
        renewed = BatchJob.objects.filter(
            pk=self.job_id, lease_token=self.token, status=BatchJob.Status.RUNNING
        ).update(lease_expires_at=timezone.now() + dt.timedelta(seconds=settings.JOB_LEASE_SECONDS))
        if not renewed:
            self.lost = True
        return bool(renewed)

    def stop(self) -> None:
        self._heartbeat.stop()

    def release(self) -> None:
        """Let the reconciler hand the job on at its next pass instead of after the lease."""
        BatchJob.objects.filter(pk=self.job_id, lease_token=self.token).update(
            lease_expires_at=timezone.now()
        )
