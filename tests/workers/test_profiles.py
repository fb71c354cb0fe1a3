"""Task options as named profiles (workers/profiles.py), checked at import."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from mlplatform.celery import app as celery_app
from workers import jobs, optimization, registry  # noqa: F401 (registers every task)
from workers.profiles import PROFILES, check_profiles, task


def workers_tasks():
    return [t for name, t in sorted(celery_app.tasks.items()) if name.startswith("workers.")]


def test_every_task_in_workers_takes_a_profile_and_its_options():
    assert workers_tasks()
    for registered in workers_tasks():
        options = PROFILES[registered.profile]
        assert {key: getattr(registered, key) for key in options} == options, registered.name
        assert registered.ignore_result


def test_the_long_idempotent_tasks_are_acked_late_on_their_own_queues(settings):
    run_job = celery_app.tasks["workers.jobs.run_job"]
    assert (run_job.queue, run_job.acks_late, run_job.reject_on_worker_lost) == ("jobs", True, True)
    assert run_job.soft_time_limit == settings.JOB_SOFT_TIME_LIMIT_SECONDS
    assert celery_app.tasks["workers.registry.validate_model_version"].queue == "validation"
    assert celery_app.tasks["workers.optimization.optimize_version"].queue == "validation"
    webhook = celery_app.tasks["workers.jobs.deliver_webhook"]
    assert (webhook.queue, webhook.soft_time_limit, webhook.time_limit) == ("default", 60, 90)


def test_a_task_is_sent_to_the_queue_of_its_profile():
    for registered in workers_tasks():
        route = celery_app.amqp.router.route(registered._get_exec_options(), registered.name)
        assert route["queue"].name == PROFILES[registered.profile]["queue"], registered.name


def test_an_unknown_profile_fails_at_import():
    with pytest.raises(ImproperlyConfigured, match="No task profile 'batch-job'"):
        task("batch-job")


def a_profile(**changes):
    return {"x": {**PROFILES["reconciler"], **changes}}


def test_an_unknown_option_fails():
    with pytest.raises(ImproperlyConfigured, match="unknown options"):
        check_profiles(a_profile(acks_lately=True))


def test_a_missing_option_fails():
    profile = a_profile()
    del profile["x"]["time_limit"]
    with pytest.raises(ImproperlyConfigured, match="missing options"):
        check_profiles(profile)


def test_a_queue_nobody_watches_fails():
    with pytest.raises(ImproperlyConfigured, match="queue 'jobz'"):
        check_profiles(a_profile(queue="jobz"))


def test_a_task_named_outside_its_module_fails():
    with pytest.raises(ImproperlyConfigured, match="must start with its module"):
        task("reconciler", name="workers.elsewhere.reconcile")(lambda: None)
