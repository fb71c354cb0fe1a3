"""The validation task, called directly as a worker would run it."""

import datetime as dt

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from apps.registry.models import ModelVersion
from tests import onnx_models
from tests.factories import ModelVersionFactory
from workers.registry import validate_model_version

pytestmark = pytest.mark.django_db


def pending_version(content: bytes | None = None, **fields) -> ModelVersion:
    artifact = ContentFile(content or onnx_models.tiny_classifier(), name="model.onnx")
    fields.setdefault("status", "pending")
    return ModelVersionFactory(artifact=artifact, **fields)


def test_it_takes_a_pending_version_to_ready():
    version = pending_version()
    validate_model_version(str(version.pk))
    version.refresh_from_db()
    assert version.status == "ready"
    assert version.validation_attempts == 1
    assert version.validated_at is not None


def test_it_is_idempotent_for_a_finished_version():
    version = pending_version()
    validate_model_version(str(version.pk))
    version.refresh_from_db()
    first = (version.validated_at, version.metrics)
    validate_model_version(str(version.pk))  # a redelivered message
    version.refresh_from_db()
    assert (version.validated_at, version.metrics) == first
    assert version.validation_attempts == 1


def expired_lease(settings):
    return timezone.now() - dt.timedelta(seconds=settings.VALIDATION_LEASE_SECONDS + 1)


def test_it_resumes_a_version_whose_worker_died(settings):
    version = pending_version(
        status="validating", validation_attempts=1, validation_started_at=expired_lease(settings)
    )
    validate_model_version(str(version.pk))
    version.refresh_from_db()
    assert version.status == "ready"
    assert version.validation_attempts == 2


def test_a_duplicate_delivery_leaves_a_version_another_worker_holds_alone():
    version = pending_version(
        status="validating", validation_attempts=1, validation_started_at=timezone.now()
    )
    validate_model_version(str(version.pk))
    version.refresh_from_db()
    assert version.status == "validating"
    assert version.validation_attempts == 1


def test_attempts_are_capped_so_a_poison_model_ends_failed(settings):
    version = pending_version(
        status="validating",
        validation_attempts=settings.VALIDATION_MAX_ATTEMPTS,
        validation_started_at=expired_lease(settings),
    )
    validate_model_version(str(version.pk))
    version.refresh_from_db()
    assert version.status == "failed"
    assert version.failure_code == "attempts_exhausted"
    assert "attempts" in version.status_reason


def test_it_leaves_an_archived_version_alone():
    version = pending_version(status="archived")
    validate_model_version(str(version.pk))
    version.refresh_from_db()
    assert version.status == "archived"
    assert version.validation_attempts == 0


def test_a_missing_artifact_fails_with_a_reason(model_store_root):
    version = pending_version()
    (model_store_root / version.artifact.name).unlink()
    validate_model_version(str(version.pk))
    version.refresh_from_db()
    assert version.status == "failed"
    assert "missing" in version.status_reason


def test_an_unknown_version_id_is_a_no_op():
    validate_model_version("999999")


def test_a_crash_inside_validation_is_recorded_not_raised(monkeypatch):
    version = pending_version()

    def crash(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("apps.registry.services.validating.validate_model_file", crash)
    validate_model_version(str(version.pk))
    version.refresh_from_db()
    assert version.status == "failed"
    assert "disk on fire" in version.status_reason


def test_the_reconciler_reenqueues_versions_whose_validation_is_owed(settings):
    from apps.registry.models import ModelVersion as MV
    from workers.registry import reconcile

    stale = pending_version()
    MV.objects.filter(pk=stale.pk).update(created_at=timezone.now() - dt.timedelta(hours=1))
    abandoned = pending_version(
        status="validating", validation_attempts=1, validation_started_at=expired_lease(settings)
    )
    fresh = pending_version()
    reconcile()  # eager Celery: the re-enqueued validations run here
    statuses = dict(MV.objects.values_list("pk", "status"))
    assert statuses[stale.pk] == "ready"
    assert statuses[abandoned.pk] == "ready"
    assert statuses[fresh.pk] == "pending"  # within its grace period: its own message is on the way


@pytest.mark.django_db(transaction=True)
def test_a_validating_worker_renews_its_lease(settings):
    from apps.core.claims import Lease
    from apps.registry.models import ModelVersion as MV
    from apps.registry.services.validating import validation_heartbeat
    from tests.live import wait_for

    settings.VALIDATION_HEARTBEAT_SECONDS = 0.05
    old = timezone.now() - dt.timedelta(minutes=5)
    version = pending_version(status="validating", validation_started_at=old)
    heartbeat = validation_heartbeat(Lease(version.pk, token=""))
    try:
        wait_for(lambda: MV.objects.get(pk=version.pk).validation_started_at > old, 10, "a lease renewal")
    finally:
        heartbeat.stop()
