"""Gunicorn settings for the web process (see docs/decisions/0007-application-server.md).

Each worker process holds its own ONNX Runtime sessions; `post_worker_init`
loads the models under PRELOAD_ALIASES before the worker takes requests.
"""

import os
import tempfile

# prometheus_client's multiprocess mode: every worker process writes its samples to this
# folder and /metrics adds them up. Set it before any worker imports prometheus_client.
# A deployment may point it at a tmpfs (docker-compose.yml); otherwise a fresh folder.
_OWN_METRICS_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mlp-metrics-")

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# Sync workers, one request at a time per process, behind a buffering proxy (nginx): the
# best tail latency measured at concurrency 16 (docs/decisions/0007-application-server.md).
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# Seconds a worker may go silent before the master restarts it (a sync worker is silent
# during a whole request, such as a model upload of hundreds of MB).
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
keepalive = 5
backlog = 2048
# gunicorn's control socket is one path per user: several servers on one machine (tests,
# benchmarks, make run) would remove each other's. Nothing here uses it.
control_socket_disable = True


def post_worker_init(worker: object) -> None:
    from django.db import connections

    from apps.inference.sessions import preload_sessions

    try:
        loaded = preload_sessions()
        worker.log.info("Preloaded models: %s", ", ".join(loaded) or "none")
    except Exception:
        # The database is unreachable, say. An error here would count as a worker that
        # failed to boot, and gunicorn would stop the whole server; the models load on
        # first use instead, and /readyz says not ready until they do.
        worker.log.exception("Could not preload models; they load on first use")
    finally:
        connections.close_all()  # this thread serves no requests; do not keep its connection open
    if os.environ.get("GUNICORN_GC_FREEZE", "1") == "1":
        # Everything loaded so far (Django, DRF, ONNX Runtime, the sessions: some 140,000
        # objects) lives as long as the process. Moving it out of the collector's reach
        # keeps full collections short: one took 58 ms without this, a stall in the
        # middle of some request (docs/performance.md).
        import gc

        gc.collect()
        gc.freeze()


def child_exit(server: object, worker: object) -> None:
    """A dead worker's live gauges (sessions loaded) stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]


def on_exit(server: object) -> None:
    """Remove the metrics folder this server made for itself."""
    if _OWN_METRICS_DIR:
        import shutil

        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
