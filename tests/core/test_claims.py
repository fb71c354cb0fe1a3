"""The claim rule shared by batch jobs, validation and optimization (apps/core/claims.py).

Shown on the two rules in use: optimization runs (a token, a lease that records its
expiry) and validation (no token, a lease that records its last renewal).
"""

import datetime as dt

import pytest
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Q
from django.utils import timezone

from apps.core.claims import ClaimRule, Lease
from apps.optimization.models import OptimizationRun
from apps.optimization.services.lifecycle import OPTIMIZATION_CLAIM
from apps.registry.models import ModelVersion
from apps.registry.services.validating import VALIDATION_CLAIM
from tests.factories import ModelVersionFactory

pytestmark = pytest.mark.django_db


def a_run(**fields) -> OptimizationRun:
    version = ModelVersionFactory()
    return OptimizationRun.objects.create(
        model=version.model, source_version=version, recipe="fp16", **fields
    )


def ago(seconds: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(seconds=seconds)


def test_of_two_claims_on_a_queued_row_only_the_first_gets_it():
    run = a_run()
    first = OPTIMIZATION_CLAIM.claim(run.pk)
    assert first is not None and len(first.token) == 32
    assert OPTIMIZATION_CLAIM.claim(run.pk) is None
    run.refresh_from_db()
    assert (run.status, run.attempts, run.lease_token) == ("running", 1, first.token)
    assert run.started_at is not None and run.lease_expires_at > timezone.now()


def test_a_row_whose_lease_expired_is_taken_over_with_a_new_token_and_its_first_start_kept():
    started = ago(600)
    run = a_run(status="running", attempts=1, lease_token="old", lease_expires_at=ago(1), started_at=started)
    lease = OPTIMIZATION_CLAIM.claim(run.pk)
    run.refresh_from_db()
    assert lease is not None and lease.token != "old"
    assert (run.attempts, run.lease_token, run.started_at) == (2, lease.token, started)


def test_a_row_out_of_attempts_is_not_claimed_but_found_exhausted(settings):
    run = a_run(attempts=settings.OPTIMIZATION_MAX_ATTEMPTS)
    assert OPTIMIZATION_CLAIM.claim(run.pk) is None
    assert list(OPTIMIZATION_CLAIM.exhausted(run.pk)) == [run]


def test_a_row_held_under_a_live_lease_is_neither_claimed_nor_exhausted(settings):
    run = a_run(status="running", attempts=settings.OPTIMIZATION_MAX_ATTEMPTS, lease_expires_at=ago(-30))
    assert OPTIMIZATION_CLAIM.claim(run.pk) is None
    assert not OPTIMIZATION_CLAIM.exhausted(run.pk).exists()


def test_a_claim_honours_an_extra_condition_and_writes_extra_changes():
    run = a_run()
    assert OPTIMIZATION_CLAIM.claim(run.pk, where=Q(recipe="dynamic-int8")) is None
    assert OPTIMIZATION_CLAIM.claim(run.pk, where=Q(recipe="fp16"), step="claimed") is not None
    run.refresh_from_db()
    assert run.step == "claimed"


def test_only_the_current_token_renews_or_holds_the_lease():
    run = a_run()
    lease = OPTIMIZATION_CLAIM.claim(run.pk)
    OptimizationRun.objects.filter(pk=run.pk).update(lease_expires_at=ago(1))
    taken_over = OPTIMIZATION_CLAIM.claim(run.pk)
    assert not OPTIMIZATION_CLAIM.renew(lease)
    assert not OPTIMIZATION_CLAIM.held(lease).exists()
    assert OPTIMIZATION_CLAIM.renew(taken_over)
    run.refresh_from_db()
    assert run.lease_expires_at > timezone.now()


def test_a_lease_that_records_its_renewal_expires_lease_seconds_after_it(settings):
    version = ModelVersionFactory(
        status="validating", validation_started_at=ago(settings.VALIDATION_LEASE_SECONDS - 5)
    )
    assert VALIDATION_CLAIM.claim(version.pk) is None  # its worker renewed it 5 s before the end
    ModelVersion.objects.filter(pk=version.pk).update(
        validation_started_at=ago(settings.VALIDATION_LEASE_SECONDS + 1)
    )
    lease = VALIDATION_CLAIM.claim(version.pk)
    assert lease == Lease(version.pk, "")  # no token: the version's status is the hold
    version.refresh_from_db()
    assert version.validation_started_at > ago(5)
    assert VALIDATION_CLAIM.renew(lease)
    ModelVersion.objects.filter(pk=version.pk).update(status="archived")
    assert not VALIDATION_CLAIM.renew(lease)


def test_a_misspelt_field_fails_when_the_rule_is_declared():
    with pytest.raises(FieldDoesNotExist):
        ClaimRule(
            model=OptimizationRun,
            queued="queued",
            running="running",
            max_attempts_setting="OPTIMIZATION_MAX_ATTEMPTS",
            lease_seconds_setting="JOB_LEASE_SECONDS",
            lease_field="lease_expires",
        )
