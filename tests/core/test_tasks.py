"""Apps enqueue tasks by name (apps/core/tasks.py) and never import `workers/`."""

import ast
from pathlib import Path

import pytest
from django.conf import settings

from apps.core import tasks

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", tasks.ENQUEUED_BY_APPS)
def test_every_task_an_app_enqueues_is_registered_by_workers(name):
    task = tasks.registered(name)
    assert task.name == name
    assert task.__module__.startswith("workers.")


def test_every_task_beat_runs_is_registered_by_workers():
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert tasks.registered(entry["task"]).name == entry["task"]


def test_an_unknown_name_is_refused():
    with pytest.raises(KeyError):
        tasks.registered("workers.jobs.no_such_task")
    with pytest.raises(KeyError):
        tasks.registered("apps.jobs.services.job_run")


def test_an_enqueued_task_runs_inline_in_eager_mode(monkeypatch):
    ran = []
    tasks.registered(tasks.VALIDATE_MODEL_VERSION)  # its module imported, to patch what it calls
    monkeypatch.setattr("workers.registry.model_version_validate", lambda version_id: ran.append(version_id))
    tasks.enqueue(tasks.VALIDATE_MODEL_VERSION, "42")
    assert ran == [42]


def imports_of(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_no_app_imports_workers():
    # mlplatform/celery.py is the Celery application: it loads `workers/` on purpose.
    sources = [*ROOT.glob("apps/**/*.py"), *ROOT.glob("mlplatform/**/*.py")]
    offenders = [
        str(path.relative_to(ROOT))
        for path in sources
        if path != ROOT / "mlplatform" / "celery.py"
        and any(module == "workers" or module.startswith("workers.") for module in imports_of(path))
    ]
    assert offenders == []
