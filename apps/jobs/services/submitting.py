"""Submitting a job: resolve and pin the version, store every input, commit, then enqueue.

Order matters for durability: inputs are stored and the job committed before
anything is enqueued, and the enqueue happens on commit. If the broker is down,
the job stays `queued` and the reconciler enqueues it later; a 202 always means
a job that will run.
"""

import contextlib
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import PermissionDenied

from apps.accounts.credentials import Credential, recorded_ids
from apps.accounts.models import ApiKey, User
from apps.accounts.services.quota import quota_consume
from apps.core import metrics, tasks
from apps.core.exceptions import InvalidInput, PayloadTooLarge, UnprocessableInput
from apps.core.text import client_text
from apps.inference.targets import Target, check_granted, check_servable, resolve_target
from apps.jobs import idempotency, webhooks
from apps.jobs.inputs import Budget, JobInput, chain_limited
from apps.jobs.models import BatchJob, JobItem
from apps.jobs.selectors import jobs_with_idempotency_key
from apps.registry.storage import model_store

logger = logging.getLogger(__name__)


@dataclass
class JobSubmission:
    """What a client asked for; `sources` yields the inputs (read once, lazily)."""

    user: User
    api_key: Credential | None  # an API key or an OAuth token: the job records which
    model: str
    version: int | None = None
    alias: str | None = None
    kind: str = "image"
    top_k: int = 5
    webhook_url: str = ""
    idempotency_key: str = ""
    request_id: str = ""
    client_address: str = ""
    routing_key: str = ""  # X-Routing-Key, for an alias under a rollout
    sources: list[Iterator[JobInput]] = field(default_factory=list)


def job_admit(*, api_key: Credential | None, body_bytes: int) -> None:
    """Whether a request may become a job at all, before its body is read: an API key (or an
    OAuth token) needs the 'jobs' scope (403 scope_missing), and the body must fit
    JOB_MAX_BYTES (413)."""
    if api_key is not None and not api_key.has_scope(ApiKey.Scope.JOBS):
        raise PermissionDenied(
            f"This request becomes a batch job, which needs an {api_key.label} with the 'jobs' scope.",
            code="scope_missing",
        )
    if body_bytes > settings.JOB_MAX_BYTES:
        raise PayloadTooLarge(
            f"The request body is {body_bytes} bytes; a job's inputs may total at most "
            f"{settings.JOB_MAX_BYTES}.",
            code="job_too_large",
            details={"limit_bytes": settings.JOB_MAX_BYTES},
        )


def job_submit(*, submission: JobSubmission) -> tuple[BatchJob, bool]:
    """Create a job, or return the one this idempotency key already made.

    Returns (job, created). The same key with a different submission is a 422
    (idempotency_key_reused); a key whose first request is still being read is a 409
    (idempotency_key_in_use). Should two requests with one key still race (no shared
    cache), the unique constraint on (owner, key) decides, and the loser answers with
    the winner's job. The fingerprint is of what the client sent (model, version or
    alias, inputs...), so a retry still finds its job after the alias has moved on.
    """
    if submission.webhook_url:  # as stored, so a replay's fingerprint matches the original's
        submission.webhook_url = webhooks.normalize_url(submission.webhook_url)
    api_key = submission.api_key
    # 403 model_not_granted, before a replay could hand back a job on that model.
    check_granted(user=submission.user, api_key=api_key, name=submission.model)
    with idempotency.in_flight(user_id=submission.user.pk, key=submission.idempotency_key):
        existing = _existing(submission)
        if existing is not None:
            return _replay(existing, _fingerprint(submission, None, [])[1], api_key), False
        return _submit_new(submission)


def _submit_new(submission: JobSubmission) -> tuple[BatchJob, bool]:
    api_key = submission.api_key
    target = resolve_target(
        user=submission.user,
        api_key=submission.api_key,
        name=submission.model,
        version=submission.version,
        alias=submission.alias,
        routing_key=submission.routing_key,
    )
    version = target.version
    check_servable(version)
    if submission.webhook_url:
        submission.webhook_url = webhooks.check_webhook_url(submission.webhook_url)
    job_id = uuid.uuid4()
    stored: list[str] = []
    try:
        items, fingerprint = _fingerprint(submission, job_id, stored)
        try:
            return _create(job_id, submission, target, items, fingerprint), True
        except IntegrityError:
            # Another request with this key committed first (the unique constraint decided).
            winner = _existing(submission)
            if winner is None:
                raise
            delete_inputs(stored)
            return _replay(winner, fingerprint, api_key), False
    except BaseException:
        delete_inputs(stored)
        raise


def _existing(submission: JobSubmission) -> BatchJob | None:
    if not submission.idempotency_key:
        return None
    return jobs_with_idempotency_key(user=submission.user, key=submission.idempotency_key).first()


def _replay(job: BatchJob, fingerprint: str, api_key: Credential | None) -> BatchJob:
    if job.fingerprint != fingerprint:
        # A key limited to other models does not learn the job's id.
        shown = api_key is None or api_key.allows_model(job.model_name)
        raise UnprocessableInput(
            "This Idempotency-Key was used for a different request: use a new key for a new job.",
            code="idempotency_key_reused",
            details={"job": str(job.id)} if shown else {},
        )
    return job


def _fingerprint(
    submission: JobSubmission, job_id: uuid.UUID | None, stored: list[str]
) -> tuple[list[JobItem], str]:
    """Read every input once: fingerprint the whole submission and, given a job id, store
    each input as it is read (`stored` collects the names, for cleaning up on failure)."""
    fields = [
        submission.model,
        submission.version,
        submission.alias,
        submission.kind,
        submission.top_k,
        submission.webhook_url,
    ]
    fingerprint = hashlib.sha256(json.dumps(fields).encode())
    items = []
    for index, item in enumerate(chain_limited(submission.sources, Budget())):
        digest = hashlib.sha256(item.data).hexdigest()
        fingerprint.update(digest.encode())
        if job_id is None:
            continue
        name = model_store.save(f"jobs/{job_id}/{index:06d}", ContentFile(item.data))
        stored.append(name)
        items.append(
            JobItem(
                index=index,
                filename=item.filename,
                content_type=client_text(item.content_type, 100),
                size=len(item.data),
                input_sha256=digest,
                input_name=name,
            )
        )
    if job_id is not None and not items:
        raise InvalidInput("The job has no inputs.", code="empty_job")
    return items, fingerprint.hexdigest()


@transaction.atomic
def _create(
    job_id: uuid.UUID,
    submission: JobSubmission,
    target: Target,
    items: list[JobItem],
    fingerprint: str,
) -> BatchJob:
    version = target.version
    job = BatchJob.objects.create(
        id=job_id,
        owner=submission.user,
        **recorded_ids(submission.api_key),
        model_version=version,
        model_name=version.model.name,
        version_number=version.number,
        alias=target.alias,
        route=target.route,
        kind=submission.kind,
        top_k=submission.top_k,
        total=len(items),
        idempotency_key=submission.idempotency_key,
        fingerprint=fingerprint,
        webhook_url=submission.webhook_url,
        request_id=submission.request_id,
        client_address=submission.client_address,
        enqueued_at=timezone.now(),
    )
    for item in items:
        item.job = job
    JobItem.objects.bulk_create(items, batch_size=1000)
    quota_consume(user=submission.user, amount=len(items))  # 429, and nothing is kept, when spent
    transaction.on_commit(lambda: enqueue_job(job.id))
    transaction.on_commit(lambda: metrics.JOBS.labels("submitted").inc())
    return job


def enqueue_job(job_id: uuid.UUID) -> bool:
    """Ring the doorbell. A broker that is down loses nothing: the job is committed and
    the reconciler enqueues it again after JOB_QUEUED_GRACE_SECONDS."""
    try:
        tasks.enqueue(tasks.RUN_JOB, str(job_id), retry=True, retry_policy=settings.JOB_ENQUEUE_RETRY_POLICY)
    except Exception:
        logger.warning("Could not enqueue job %s; the reconciler will", job_id, exc_info=True)
        return False
    return True


def delete_inputs(names: list[str]) -> None:
    folders = set()
    for name in names:
        try:
            model_store.delete(name)
        except OSError:
            logger.warning("Could not delete %s", name, exc_info=True)
        folders.add(name.rsplit("/", 1)[0])
    for folder in folders:  # the job's own folder, once empty (filesystem storage)
        with contextlib.suppress(OSError, NotImplementedError):
            os.rmdir(model_store.path(folder))
