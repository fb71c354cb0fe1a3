"""Batch jobs: the database is the source of truth, the broker only a doorbell.

A job pins one model version at submission. Its inputs are stored files, one
`JobItem` each, committed before anything is enqueued. A worker claims the job
(a conditional UPDATE), holds a lease it renews, and writes each item's result
once: an item moves from `pending` only under the lease, and its audit
`Prediction` is unique per item (`Prediction.job_item`).
"""

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.jobs import webhook_signing
from apps.registry.models import VisibleQuerySet

if TYPE_CHECKING:
    from apps.accounts.models import User


class BatchJobQuerySet(VisibleQuerySet):
    model_name_field = "model_name"

    def theirs(self, user: "User") -> Q:
        """The user's own jobs, as their audit rows: by owner, not by the model's visibility."""
        return Q(owner=user)


class BatchJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    # The OAuth application whose token submitted the job; its audit rows record it too.
    oauth_application = models.ForeignKey(
        "oauth.Application", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    model_version = models.ForeignKey(
        "registry.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    # Copied in, so a job still reads correctly after its model or version is deleted.
    model_name = models.CharField(max_length=100)
    version_number = models.PositiveIntegerField()
    alias = models.CharField(max_length=64, blank=True)
    # 'primary' or 'canary' when the alias had an active rollout at submission (apps/rollouts).
    route = models.CharField(max_length=8, blank=True, default="", db_default="")
    kind = models.CharField(max_length=8, choices=[("image", "image"), ("tensor", "tensor")])
    top_k = models.PositiveSmallIntegerField(default=5)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0, help_text="Items with a result (succeeded or failed).")
    failed_items = models.PositiveIntegerField(default=0)
    idempotency_key = models.CharField(max_length=255, blank=True)
    fingerprint = models.CharField(max_length=64, blank=True, help_text="sha256 of what was submitted.")
    webhook_url = models.URLField(max_length=2000, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    client_address = models.CharField(max_length=64, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    # Delivery and the lease: see apps/jobs/services/running.py.
    attempts = models.PositiveSmallIntegerField(default=0)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    progress_at = models.DateTimeField(null=True, blank=True)
    items_per_second = models.FloatField(null=True, blank=True)

    objects = BatchJobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="job_unique_idempotency_key",
            )
        ]
        indexes = [models.Index(fields=["owner", "-created_at"], name="job_owner_recent")]

    def __str__(self) -> str:
        return f"job {self.id} ({self.model_name} v{self.version_number}, {self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class JobItem(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    job = models.ForeignKey(BatchJob, on_delete=models.CASCADE, related_name="items")
    index = models.PositiveIntegerField()
    filename = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    input_sha256 = models.CharField(max_length=64)
    input_name = models.CharField(max_length=500, blank=True, help_text="The stored input (storage name).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    output = models.JSONField(default=dict, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="job_item_unique_index")]
        indexes = [models.Index(fields=["job", "status", "index"], name="job_item_status")]

    def __str__(self) -> str:
        return f"item {self.index} of {self.job_id} ({self.status})"


def new_secret() -> str:
    """A new webhook signing secret (`whsec_…`): the default of `WebhookSecret.secret`."""
    return webhook_signing.new_secret()


_new_secret = new_secret  # the name migration 0001 refers to


class WebhookSecret(models.Model):
    """The per-user secret that signs the platform's webhook deliveries (Standard Webhooks).

    A rotation keeps the replaced secret as `previous_secret` until `previous_valid_until`:
    in that window both sign every delivery, so receivers can switch without losing one.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_secret"
    )
    secret = models.CharField(max_length=100, default=new_secret)
    previous_secret = models.CharField(max_length=100, blank=True)
    previous_valid_until = models.DateTimeField(null=True, blank=True)
    rotated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"webhook secret of {self.user_id}"

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets that sign a delivery made at `now`: the current one first."""
        in_overlap = self.previous_secret and self.previous_valid_until and now < self.previous_valid_until
        return [self.secret, self.previous_secret] if in_overlap else [self.secret]

    def rotate(self, *, now: datetime, overlap_seconds: int) -> None:
        """A new secret; the current one keeps signing for `overlap_seconds` (0: stops now).
        A second rotation within the window drops the oldest: at most two secrets sign."""
        self.previous_secret = self.secret if overlap_seconds > 0 else ""
        self.previous_valid_until = now + timedelta(seconds=overlap_seconds) if overlap_seconds > 0 else None
        self.secret = new_secret()


class WebhookDelivery(models.Model):
    """One attempt to deliver a job's completion webhook: every attempt is kept."""

    job = models.ForeignKey(BatchJob, on_delete=models.CASCADE, related_name="webhook_deliveries")
    attempt = models.PositiveSmallIntegerField()
    url = models.URLField(max_length=2000)
    event = models.CharField(max_length=50, default="job.finished")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    succeeded = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "attempt"]

    def __str__(self) -> str:
        return f"webhook {self.attempt} of {self.job_id}: {self.status_code or self.error[:40]}"
