"""Gunicorn settings for the web process (see docs/decisions/0007-application-server.md).

Each worker process holds its own ONNX Runtime sessions; `post_worker_init`
loads the models under PRELOAD_ALIASES before the worker takes requests.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))  # model uploads of hundreds of MB
keepalive = 5
backlog = 2048


def post_worker_init(worker: object) -> None:
    from apps.inference.services import preload_sessions

    loaded = preload_sessions()
    worker.log.info("Preloaded models: %s", ", ".join(loaded) or "none")
