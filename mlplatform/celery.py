"""The Celery application shared by web processes (which enqueue) and workers."""

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlplatform.settings.local")

app = Celery("mlplatform")
# Every Celery setting lives in Django settings under the CELERY_ prefix.
app.config_from_object("django.conf:settings", namespace="CELERY")
# Tasks live in the top-level `workers` package, not inside the apps.
app.autodiscover_tasks(["workers"], related_name="registry")


@worker_process_init.connect
def preload_models(**kwargs: object) -> None:
    """Each worker process loads the production models once, before taking tasks."""
    from apps.inference.services import preload_sessions

    preload_sessions()
