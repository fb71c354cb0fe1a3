"""Task options, declared once as named profiles: every task in `workers/` takes one.

    @task("batch_job")
    def run_job(job_id: str) -> str: ...

A profile says which queue a task goes to (docs/workers.md), whether it is acknowledged
late, and its time limits. The checks run when a module of `workers/` is imported (by every
worker and beat process, and by a web process at its first enqueue): an unknown profile,
an option that is not one of OPTIONS, a profile missing one of REQUIRED, or a queue not in
CELERY_QUEUES_MONITORED fails the import, so a typo never ships as a task with Celery's
defaults on the wrong queue.

`acks_late` with `reject_on_worker_lost` is only for idempotent tasks: the message is
acknowledged when the task ends, and goes back to the queue when its worker process dies.
Every task here is idempotent: the long ones claim their row first (apps/core/claims.py),
so a second delivery finds it claimed or finished; the reconcilers only enqueue; a second
webhook attempt is one more delivery, which webhooks allow (they are at least once).
"""

from collections.abc import Callable
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# Options every profile states, so a profile reads whole.
REQUIRED = frozenset({"queue", "acks_late", "reject_on_worker_lost", "soft_time_limit", "time_limit"})
# Options a profile may also set: Celery task options this project has a use for.
OPTIONS = REQUIRED | {
    "ignore_result",
    "max_retries",
    "default_retry_delay",
    "autoretry_for",
    "retry_backoff",
    "retry_backoff_max",
    "retry_jitter",
    "rate_limit",
}

PROFILES: dict[str, dict[str, Any]] = {
    # One task runs one whole batch job: minutes to an hour of CPU. At the soft limit the
    # job gives its lease back and records worker_error; the next attempt resumes it.
    "batch_job": {
        "queue": "jobs",
        "acks_late": True,
        "reject_on_worker_lost": True,
        "soft_time_limit": settings.JOB_SOFT_TIME_LIMIT_SECONDS,
        "time_limit": settings.JOB_TIME_LIMIT_SECONDS,
    },
    # Validation and optimization of a model version: seconds to minutes of CPU, on a queue
    # of their own so they never wait behind a long job, nor a job behind them.
    "model_check": {
        "queue": "validation",
        "acks_late": True,
        "reject_on_worker_lost": True,
        "soft_time_limit": settings.CELERY_TASK_SOFT_TIME_LIMIT,
        "time_limit": settings.CELERY_TASK_TIME_LIMIT,
    },
    # Converting an upload in another format to ONNX (apps/registry/intake/): a child process
    # under its own limits (CONVERSION_*) does the work; the task's limits only back up the
    # child's wall-clock deadline. A queue of its own, so workers without the converter extras
    # (or with tighter isolation) can leave it to the workers that have them.
    "conversion": {
        "queue": "conversion",
        "acks_late": True,
        "reject_on_worker_lost": True,
        "soft_time_limit": settings.CONVERSION_WALL_SECONDS + 120,
        "time_limit": settings.CONVERSION_WALL_SECONDS + 180,
    },
    # The reconcilers (Celery beat): short database scans that enqueue owed work.
    "reconciler": {
        "queue": "default",
        "acks_late": True,
        "reject_on_worker_lost": True,
        "soft_time_limit": settings.CELERY_TASK_SOFT_TIME_LIMIT,
        "time_limit": settings.CELERY_TASK_TIME_LIMIT,
    },
    # One batch of a rollout's shadow traffic (ADR 0018): seconds of CPU at most, on a queue
    # of its own, so a backlog of shadows never delays a reconciler or a webhook, and its
    # length (the drop rule's measure) counts only shadows.
    "shadow": {
        "queue": settings.SHADOW_QUEUE,
        "acks_late": True,
        "reject_on_worker_lost": True,
        "soft_time_limit": 120,
        "time_limit": 150,
    },
    # One webhook delivery attempt: at most 3 s to connect and 10 s for an answer, so
    # these limits only catch a hang; a slow receiver never holds up inference.
    "webhook": {
        "queue": "default",
        "acks_late": True,
        "reject_on_worker_lost": True,
        "soft_time_limit": 60,
        "time_limit": 90,
    },
}


def check_profiles(profiles: dict[str, dict[str, Any]]) -> None:
    """Raise ImproperlyConfigured for a profile with an unknown or missing option, or a queue
    no worker is known to consume."""
    for name, options in profiles.items():
        unknown, missing = set(options) - OPTIONS, REQUIRED - set(options)
        if unknown:
            raise ImproperlyConfigured(f"Task profile {name!r}: unknown options {sorted(unknown)}.")
        if missing:
            raise ImproperlyConfigured(f"Task profile {name!r}: missing options {sorted(missing)}.")
        if options["queue"] not in settings.CELERY_QUEUES_MONITORED:
            raise ImproperlyConfigured(
                f"Task profile {name!r}: queue {options['queue']!r} is not one of "
                f"CELERY_QUEUES_MONITORED {settings.CELERY_QUEUES_MONITORED}."
            )


check_profiles(PROFILES)


def task(profile: str, *, name: str | None = None) -> Callable[[Callable[..., Any]], Task]:
    """A shared Celery task with the options of `profile`, named `<module>.<function>` unless
    `name` says otherwise (a name already in messages and beat schedules stays). The name
    must start with the task's module: apps/core/tasks.py imports a task's module by it."""
    if profile not in PROFILES:
        raise ImproperlyConfigured(f"No task profile {profile!r}; the profiles are {', '.join(PROFILES)}.")

    def decorate(func: Callable[..., Any]) -> Task:
        task_name = name or f"{func.__module__}.{func.__name__}"
        if not task_name.startswith(f"{func.__module__}."):
            raise ImproperlyConfigured(f"Task {task_name!r} must start with its module's name.")
        # Outcomes are rows, not Celery results (CELERY_TASK_IGNORE_RESULT).
        options = {"ignore_result": True, **PROFILES[profile]}
        return shared_task(name=task_name, profile=profile, **options)(func)

    return decorate
