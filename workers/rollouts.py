"""Rollout tasks. Thin: call the service, which owns the logic."""

from apps.rollouts.services import check_guards as check_rollout_guards
from workers.profiles import task


@task("reconciler")
def check_guards() -> list[int]:
    """Periodic (Celery beat, ROLLOUT_GUARD_INTERVAL_SECONDS): stop each active rollout one
    of whose candidates passes a guard rail, recording why. Idempotent: a stopped rollout is
    left alone."""
    return check_rollout_guards()
