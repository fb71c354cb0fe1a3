"""Health endpoints: /healthz says the process is alive, /readyz that it can do its work."""

import uuid

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from mlplatform.celery import app as celery_app


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_broker() -> None:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def _check_model_store() -> None:
    root = settings.MODEL_STORE_ROOT
    root.mkdir(parents=True, exist_ok=True)
    probe = root / f".readyz-{uuid.uuid4().hex}"
    probe.write_bytes(b"ok")
    probe.unlink()


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {}
    for name, check in (
        ("database", _check_database),
        ("broker", _check_broker),
        ("model_store", _check_model_store),
    ):
        try:
            check()
            checks[name] = {"ok": True}
        except Exception as exc:  # any failure means "not ready"; say which and why
            checks[name] = {"ok": False, "error": str(exc)[:300]}
    ready = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status=200 if ready else 503
    )
