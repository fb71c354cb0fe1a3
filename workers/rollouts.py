"""Rollout tasks. Thin: call the service, which owns the logic."""

from typing import Any

from apps.rollouts.guards import check_guards as check_rollout_guards
from apps.rollouts.shadow_runs import shadow_inputs_sweep, shadow_run
from workers.profiles import task


@task("reconciler")
def check_guards() -> list[int]:
    """Periodic (Celery beat, ROLLOUT_GUARD_INTERVAL_SECONDS): stop each active rollout one
    of whose candidates passes a guard rail, and each shadow past its disagreement threshold,
    recording why. Idempotent: a stopped rollout or shadow is left alone."""
    return check_rollout_guards()


@task("shadow")
def run_shadow(message: dict[str, Any]) -> int:
    """One batch of mirrored requests (stored inputs named in `message`) through the shadow
    version; the rows written. Idempotent: rows already written are skipped, and a unique
    index stops a racing second delivery (ADR 0018)."""
    return shadow_run(message)


@task("reconciler")
def sweep_shadow_inputs() -> int:
    """Periodic (Celery beat, hourly): delete stored shadow inputs past their retention that
    no message will claim (SHADOW_INPUT_RETENTION_HOURS)."""
    return shadow_inputs_sweep()
