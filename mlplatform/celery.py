"""The Celery application shared by web processes (which enqueue) and workers."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlplatform.settings.local")

app = Celery("mlplatform")
# Every Celery setting lives in Django settings under the CELERY_ prefix.
app.config_from_object("django.conf:settings", namespace="CELERY")
# Tasks live in the top-level `workers` package, not inside the apps.
app.autodiscover_tasks(["workers"], related_name="registry")
app.autodiscover_tasks(["workers"], related_name="jobs")
