"""Enqueueing Celery tasks by name: apps never import `workers/`.

Tasks are thin and depend on the services, never the other way round: the tasks live in
the top-level `workers/` package and call into the apps, and an app that wants work done
on a worker names the task here. The names below are every task an app enqueues;
tests/core/test_tasks.py checks that `workers/` registers each of them.

`enqueue` goes through the registered task (not `send_task`), so the task's profile
(its queue and limits, workers/profiles.py) applies and `CELERY_TASK_ALWAYS_EAGER` (tests)
runs it inline. A web process has not imported `workers/` (only Celery's command line
does), so the task's module is imported on the first enqueue: by convention a task's name
starts with its module (`workers.jobs.run_job` is in `workers.jobs`, checked at import).
"""

import importlib
from typing import Any

from celery import Task, current_app

RUN_JOB = "workers.jobs.run_job"
DELIVER_JOB_WEBHOOK = "workers.jobs.deliver_webhook"
VALIDATE_MODEL_VERSION = "workers.registry.validate_model_version"
OPTIMIZE_VERSION = "workers.optimization.optimize_version"
CONVERT_MODEL_VERSION = "workers.conversion.convert_model_version"
RUN_SHADOW = "workers.rollouts.run_shadow"

ENQUEUED_BY_APPS = (
    RUN_JOB,
    DELIVER_JOB_WEBHOOK,
    VALIDATE_MODEL_VERSION,
    OPTIMIZE_VERSION,
    RUN_SHADOW,
    CONVERT_MODEL_VERSION,
)


def enqueue(name: str, *args: Any, **options: Any) -> None:
    """Send task `name` with positional `args`; `options` are `apply_async`'s (`countdown`,
    `retry`, `retry_policy`...). Raises what the broker raises: the caller decides whether
    a failed enqueue is left to a reconciler."""
    registered(name).apply_async(args=args, **options)


def registered(name: str) -> Task:
    """The task registered under `name`, its module imported if need be. KeyError for a
    name no module of `workers/` registers."""
    if name not in current_app.tasks:
        module, _, _ = name.rpartition(".")
        if not module.startswith("workers."):
            raise KeyError(f"{name!r} is not a task of workers/.")
        importlib.import_module(module)
    return current_app.tasks[name]
