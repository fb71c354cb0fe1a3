"""A running job's lease: the job's claim rule, and the lease renewed in the background while
a worker works on the job."""

from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.core.claims import ClaimRule, Lease
from apps.core.heartbeat import Heartbeat
from apps.jobs.models import BatchJob

JOB_CLAIM = ClaimRule(
    model=BatchJob,
    queued=BatchJob.Status.QUEUED,
    running=BatchJob.Status.RUNNING,
    max_attempts_setting="JOB_MAX_ATTEMPTS",
    lease_seconds_setting="JOB_LEASE_SECONDS",
)


class JobLease:
    """Renews the job's lease every JOB_HEARTBEAT_SECONDS while the worker works. If the
    renewal finds the token gone (the job was taken over or finished), `lost` is set."""

    def __init__(self, job_id: Any, token: str) -> None:
        self.job_id, self.token = job_id, token
        self.lost = False
        self._heartbeat = Heartbeat(
            self._renew, interval=settings.JOB_HEARTBEAT_SECONDS, name=f"job {job_id}"
        )

    @property
    def held(self) -> Lease:
        return Lease(self.job_id, self.token)

    def _renew(self) -> bool:
        renewed = JOB_CLAIM.renew(self.held)
        if not renewed:
            self.lost = True
        return renewed

    def stop(self) -> None:
        self._heartbeat.stop()

    def release(self, **changes: Any) -> None:
        """Let the reconciler hand the job on at its next pass instead of after the lease
        (`changes`: what else to record, such as why the attempt ended)."""
        BatchJob.objects.filter(pk=self.job_id, lease_token=self.token).update(
            lease_expires_at=timezone.now(), **changes
        )
