"""Health endpoints: /healthz says the process is alive, /readyz that it can do its work."""

import uuid

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from apps.core.exception_handler import json_error
from mlplatform.celery import app as celery_app


def _only_get(request: HttpRequest) -> JsonResponse | None:
    if request.method not in ("GET", "HEAD"):
        response = json_error("method_not_allowed", f"Method {request.method} not allowed.", 405)
        response["Allow"] = "GET, HEAD"
        return response
    return None


def healthz(request: HttpRequest) -> JsonResponse:
    return _only_get(request) or JsonResponse({"status": "ok"})


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


def readyz(request: HttpRequest) -> JsonResponse:
    if (refused := _only_get(request)) is not None:
        return refused
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
