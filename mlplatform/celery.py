"""The Celery application shared by web processes (which enqueue) and workers."""

import atexit
import os
import shutil
import sys
import tempfile

from celery import Celery
from celery.signals import worker_init, worker_process_shutdown

if "worker" in sys.argv and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # A worker's pool processes write their metrics to one folder that its exporter reads
    # (workers/metrics.py); it must be set before prometheus_client is first imported.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mlp-worker-metrics-")
    _metrics_dir, _main_pid = os.environ["PROMETHEUS_MULTIPROC_DIR"], os.getpid()

    @atexit.register
    def _remove_metrics_dir() -> None:
        """Removed when the worker's main process exits (not when a pool process does)."""
        if os.getpid() == _main_pid:
            shutil.rmtree(_metrics_dir, ignore_errors=True)


os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlplatform.settings.local")

app = Celery("mlplatform")
# Every Celery setting lives in Django settings under the CELERY_ prefix.
app.config_from_object("django.conf:settings", namespace="CELERY")
# Tasks live in the top-level `workers` package, not inside the apps. Worker and beat
# processes import these modules at start; a web process imports a task's module at its
# first enqueue (apps/core/tasks.py), since apps name tasks and never import `workers`.
app.autodiscover_tasks(["workers"], related_name="registry")
app.autodiscover_tasks(["workers"], related_name="jobs")
app.autodiscover_tasks(["workers"], related_name="optimization")
app.autodiscover_tasks(["workers"], related_name="rollouts")
app.autodiscover_tasks(["workers"], related_name="conversion")


@worker_init.connect
def _start_metrics_exporter(**kwargs: object) -> None:
    # Not a cycle: this module is the Celery application (process wiring, like the
    # autodiscovery above), not an app; workers/metrics.py imports nothing from here, and
    # only a worker process, once started, runs this.
    from workers.metrics import start_exporter

    start_exporter()


@worker_process_shutdown.connect
def _mark_process_dead(pid: int | None = None, **kwargs: object) -> None:
    from prometheus_client import multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid or os.getpid())
