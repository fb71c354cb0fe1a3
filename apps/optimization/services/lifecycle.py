"""An optimization run's life cycle: requested (web), claimed, run and finished (worker),
reconciled (beat). What the worker does with the run is in `execution`."""

import datetime as dt
import logging
import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.accounts.models import User
from apps.core import tasks
from apps.core.claims import ClaimRule, Lease
from apps.core.exceptions import ApplicationError, Conflict, InvalidInput, UnprocessableInput
from apps.core.heartbeat import Heartbeat
from apps.optimization import recipes
from apps.optimization.models import EvaluationSet, OptimizationRun
from apps.optimization.services.execution import optimization_execute
from apps.registry.models import ModelVersion

logger = logging.getLogger(__name__)

# Runs are leased as batch jobs are (JOB_LEASE_SECONDS, renewed every JOB_HEARTBEAT_SECONDS).
OPTIMIZATION_CLAIM = ClaimRule(
    model=OptimizationRun,
    queued=OptimizationRun.Status.QUEUED,
    running=OptimizationRun.Status.RUNNING,
    max_attempts_setting="OPTIMIZATION_MAX_ATTEMPTS",
    lease_seconds_setting="JOB_LEASE_SECONDS",
)

# --- Requesting a run -------------------------------------------------------------------------------


def optimization_request(
    *,
    version: ModelVersion,
    recipe: str,
    user: User | None,
    evaluation_set: EvaluationSet | None = None,
    calibration_set: EvaluationSet | None = None,
    params: dict[str, Any] | None = None,
) -> OptimizationRun:
    """Check the request and queue a run (202); the worker does the rest."""
    if recipe not in recipes.RECIPES:
        raise InvalidInput(
            f"No recipe '{recipe}'; the recipes are {', '.join(recipes.RECIPES)}.",
            code="unknown_recipe",
            details={"recipes": list(recipes.RECIPES)},
        )
    if version.status != ModelVersion.Status.READY:
        raise Conflict(
            f"Version {version.number} is {version.status}; only a ready version can be optimized.",
            code="version_not_ready",
            details={"version": version.number, "status": version.status},
        )
    if recipe == "static-int8" and calibration_set is None:
        raise InvalidInput(
            "static-int8 calibrates on a calibration set: name one (an evaluation set of this model).",
            code="calibration_set_required",
        )
    if recipe == "auto-int8" and evaluation_set is None:
        raise InvalidInput(
            "auto-int8 searches for a model that passes the accuracy gate: name an evaluation set"
            " (it also calibrates, unless a calibration set is named).",
            code="evaluation_set_required",
        )
    for chosen in (evaluation_set, calibration_set):
        if chosen is not None:
            unknown = sorted(set(chosen.summary.get("labels", {})) - set(version.labels))
            if unknown and chosen is evaluation_set:
                raise UnprocessableInput(
                    f"Evaluation set '{chosen.name}' has labels version {version.number} does not have: "
                    f"{', '.join(unknown[:20])}.",
                    code="unknown_labels",
                    details={"unknown_labels": unknown[:100]},
                )
    run = OptimizationRun.objects.create(
        model=version.model,
        source_version=version,
        recipe=recipe,
        params=params or {},
        evaluation_set=evaluation_set,
        calibration_set=calibration_set,
        created_by=user,
    )
    transaction.on_commit(lambda: enqueue_run(run.pk))
    return run


def enqueue_run(run_id: uuid.UUID) -> None:
    """Ring the doorbell; a broker that is down costs a delay (the reconciler enqueues the
    run again), never a run."""
    try:
        tasks.enqueue(
            tasks.OPTIMIZE_VERSION, str(run_id), retry=True, retry_policy=settings.JOB_ENQUEUE_RETRY_POLICY
        )
    except Exception:
        logger.warning("Could not enqueue optimization %s; the reconciler will", run_id, exc_info=True)


# --- Running (on a worker) ----------------------------------------------------------------------------


def _heartbeat(lease: Lease) -> Heartbeat:
    """Renews the running optimization's lease while its worker works; ends when another
    worker has taken the run over."""
    return Heartbeat(
        lambda: OPTIMIZATION_CLAIM.renew(lease),
        interval=settings.JOB_HEARTBEAT_SECONDS,
        name=f"optimization {lease.pk}",
    )


def optimization_run(*, run_id: str) -> str:
    """Claim and run one optimization: `queued` (or `running` under an expired lease) →
    `running` → `succeeded` | `failed`. Returns its final status, `failed` for a run out of
    attempts, or `not_claimed` (another worker holds it, or it has finished)."""
    lease = OPTIMIZATION_CLAIM.claim(run_id)
    if lease is None:
        return _settle_unclaimable(run_id)
    run = OptimizationRun.objects.select_related("source_version__model", "created_by").get(pk=run_id)
    heartbeat = _heartbeat(lease)
    try:
        optimization_execute(run)
        status, code, message = OptimizationRun.Status.SUCCEEDED, "", ""
    except ApplicationError as exc:
        status, code, message = OptimizationRun.Status.FAILED, exc.code, exc.message
    except recipes.RecipeError as exc:
        status, code, message = OptimizationRun.Status.FAILED, exc.code, exc.message
    except Exception as exc:  # a bug or a broken environment: recorded, never left running
        logger.exception("Optimization %s crashed", run_id)
        status, code, message = (
            OptimizationRun.Status.FAILED,
            "optimization_error",
            f"{type(exc).__name__}: {exc}",
        )
    finally:
        heartbeat.stop()
    if status == OptimizationRun.Status.FAILED and run.result_version is not None:
        # A result the run could not finish measuring or gating must not take an alias.
        ModelVersion.objects.filter(pk=run.result_version.pk).exclude(failure_code="accuracy_gate").filter(
            Q(status=ModelVersion.Status.READY) | Q(failure_code="not_evaluated")
        ).update(
            status=ModelVersion.Status.FAILED,
            failure_code="not_evaluated",
            status_reason=f"Its optimization run failed before the accuracy gate: {message}"[:2000],
        )
    # Only under this worker's lease: a worker that stalled past it and was replaced says nothing.
    OPTIMIZATION_CLAIM.held(lease).update(
        status=status,
        finished_at=timezone.now(),
        error_code=code,
        error_message=message[:2000],
        report=run.report,
        result_version=run.result_version,
        step="done" if status == OptimizationRun.Status.SUCCEEDED else run.step,
        progress=100 if status == OptimizationRun.Status.SUCCEEDED else run.progress,
        lease_expires_at=None,
    )
    return status


def _settle_unclaimable(run_id: str) -> str:
    """`queued` (or `running` under an expired lease) with no attempts left → `failed`
    (`attempts_exhausted`); its result, if registered but never gated, may not take an alias."""
    exhausted = OPTIMIZATION_CLAIM.exhausted(run_id)
    result = exhausted.values_list("result_version", flat=True).first()
    if not exhausted.update(
        status=OptimizationRun.Status.FAILED,
        finished_at=timezone.now(),
        error_code="attempts_exhausted",
        error_message="The optimization did not finish in its attempts (its worker died).",
    ):
        return "not_claimed"
    if result is not None:
        ModelVersion.objects.filter(pk=result, status=ModelVersion.Status.READY).update(
            status=ModelVersion.Status.FAILED,
            failure_code="not_evaluated",
            status_reason="Its optimization run died before the accuracy gate.",
        )
    return OptimizationRun.Status.FAILED


# --- The reconciler ----------------------------------------------------------------------------------------


def reconcile_optimizations() -> list[str]:
    """Enqueue again the runs whose worker died (lease expired) or whose message was lost."""
    now = timezone.now()
    grace = now - dt.timedelta(seconds=settings.JOB_QUEUED_GRACE_SECONDS)
    owed = OptimizationRun.objects.filter(
        Q(status=OptimizationRun.Status.QUEUED, created_at__lt=grace) | OPTIMIZATION_CLAIM.lease_expired(now)
    )
    run_ids = [str(pk) for pk in owed.values_list("pk", flat=True)[:100]]
    for run_id in run_ids:
        enqueue_run(uuid.UUID(run_id))
    return run_ids
