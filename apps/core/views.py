"""Health endpoints: /healthz says the process is alive, /readyz that it can do its work."""

import hmac
import ipaddress
import uuid
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST

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


def _check_models() -> None:
    """The versions this process preloads (under PRELOAD_ALIASES, as many as its session cache
    holds) are loaded (loading them if not)."""
    from apps.inference.sessions import preload_sessions, preload_targets, sessions

    wanted = {(alias.version.pk, alias.version.sha256) for alias in preload_targets()}
    missing = wanted - set(sessions().keys())
    if missing:
        preload_sessions()
        missing -= set(sessions().keys())
    if missing:
        raise RuntimeError(f"{len(missing)} preloaded model(s) could not be loaded")


def readyz(request: HttpRequest) -> JsonResponse:
    if (refused := _only_get(request)) is not None:
        return refused
    checks = readiness_checks()
    ready = all(check["ok"] for check in checks.values())
    body: dict = {"status": "ready" if ready else "not_ready"}
    # Which component failed, and its exception text (host names, paths), is for the callers
    # who may read the metrics (METRICS_ALLOWED_NETWORKS or METRICS_TOKEN); others, the status.
    if _metrics_allowed(request):
        body["checks"] = checks
    return JsonResponse(body, status=200 if ready else 503)


def _metrics_allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip(), token):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_NETWORKS
    )


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics of every process (web and, when they share the metrics folder,
    workers), plus the broker's queue depths. Only for METRICS_ALLOWED_NETWORKS or a
    bearer METRICS_TOKEN."""
    if (refused := _only_get(request)) is not None:
        return refused
    if not _metrics_allowed(request):
        return json_error("forbidden", "Metrics are not available to this client.", 403)
    from apps.core.metrics import scrape

    body = scrape(broker_url=settings.CELERY_BROKER_URL, queues=settings.CELERY_QUEUES_MONITORED)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


_CHECKS = {
    "database": _check_database,
    "broker": _check_broker,
    "model_store": _check_model_store,
    "models": _check_models,
}


def readiness_checks(names: tuple[str, ...] = tuple(_CHECKS)) -> dict[str, dict[str, Any]]:
    """Each named check's verdict: {"ok": True} or {"ok": False, "error": why}."""
    checks: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            _CHECKS[name]()
            checks[name] = {"ok": True}
        except Exception as exc:  # any failure means "not ready"; say which and why
            checks[name] = {"ok": False, "error": str(exc)[:300]}
    return checks
