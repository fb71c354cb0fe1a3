"""gunicorn.conf.py: the defaults ADR 0011 chose, and what a worker does before serving."""

import gc
import logging
import runpy
from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


def load(monkeypatch, **env: str) -> dict:
    for name in ("GUNICORN_WORKERS", "GUNICORN_THREADS", "GUNICORN_WORKER_CLASS", "GUNICORN_GC_FREEZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp")  # do not make a folder of its own
    return runpy.run_path(str(CONFIG))


def test_the_defaults_are_two_sync_workers_of_one_thread(monkeypatch):
    config = load(monkeypatch)
    assert (config["worker_class"], config["workers"], config["threads"]) == ("sync", 2, 1)


class FakeWorker:
    log = logging.getLogger("test.gunicorn")


@pytest.mark.django_db
def test_a_worker_freezes_what_it_loaded_before_serving(monkeypatch):
    config = load(monkeypatch)
    try:
        config["post_worker_init"](FakeWorker())
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


@pytest.mark.django_db
def test_freezing_can_be_turned_off(monkeypatch):
    config = load(monkeypatch, GUNICORN_GC_FREEZE="0")
    config["post_worker_init"](FakeWorker())
    assert gc.get_freeze_count() == 0


@pytest.mark.django_db
def test_a_worker_that_cannot_preload_still_boots(monkeypatch, caplog):
    """An exception from post_worker_init would make gunicorn stop the whole server."""
    from django.db import OperationalError

    from apps.inference import sessions

    def unreachable() -> list[str]:
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(sessions, "preload_sessions", unreachable)
    config = load(monkeypatch, GUNICORN_GC_FREEZE="0")
    config["post_worker_init"](FakeWorker())
    assert "Could not preload models" in caplog.text
