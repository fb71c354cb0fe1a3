"""Optimization tasks. Thin: take string ids, call the services, which own the logic."""

from apps.optimization.services.lifecycle import optimization_run, reconcile_optimizations
from workers.profiles import task


@task("model_check")
def optimize_version(run_id: str) -> str:
    """Apply a recipe to a version and register the result as a new version. Idempotent:
    a run already claimed or finished is left alone; attempts are capped. auto-int8's
    search stops at its own time box (OPTIMIZATION_AUTO_INT8_SECONDS), inside this task's
    soft time limit."""
    return optimization_run(run_id=run_id)


@task("reconciler")
def reconcile() -> None:
    """Periodic (Celery beat): enqueue again the runs whose message or worker was lost."""
    reconcile_optimizations()
