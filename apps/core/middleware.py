"""Request ids: accepted from `X-Request-ID` or generated, echoed back, and logged."""

import contextvars
import functools
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django_prometheus.middleware import PrometheusAfterMiddleware as _PrometheusAfterMiddleware
from django_prometheus.utils import Time

from apps.core.text import is_clean_text

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# A client-supplied id is echoed into headers and logs, so keep it short and plain.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def accepted_request_id(supplied: str) -> str:
    """The client's request id if it is short and plain, else a new one (any door)."""
    return supplied if _VALID_REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex


def current_request_id() -> str:
    return request_id_var.get()


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        supplied = request.headers.get("X-Request-ID", "")
        request_id = accepted_request_id(supplied)
        request.request_id = request_id  # type: ignore[attr-defined]  # our own attribute
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response


class RequestIdLogFilter(logging.Filter):
    """Adds `request_id` to every log record, '-' outside a request.

    Django logs a request's 4xx and 5xx lines ("Unauthorized: ...", "Internal Server Error:
    ...") after the middleware has returned, so the request's own id, passed along in the
    record as `request`, comes first."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            request = getattr(record, "request", None)
            record.request_id = getattr(request, "request_id", None) or request_id_var.get()
        return True


request_logger = logging.getLogger("mlplatform.request")


def log_context(request: object) -> dict[str, Any]:
    """Fields a view adds to its request's log line (model, version, job...)."""
    django_request = getattr(request, "_request", request)
    context = getattr(django_request, "log_context", None)
    if context is None:
        context = django_request.log_context = {}  # type: ignore[attr-defined]  # our own attribute
    return context


class RequestLogMiddleware:
    """One log line per request: request id, user, model and version (where a view set
    them on `request.log_context`), status and latency."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        context: dict[str, Any] = {}  # views add to it through log_context(request)
        request.log_context = context  # type: ignore[attr-defined]  # our own attribute
        response = self.get_response(request)
        user = getattr(request, "user", None)
        request_logger.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                "user_id": user.pk if user is not None and user.is_authenticated else None,
                **context,
            },
        )
        return response


class PrometheusAfterMiddleware(_PrometheusAfterMiddleware):
    """django-prometheus's, but a malformed Content-Length (a client's mistake, answered
    400 by the view) must not turn into a 500 inside the metrics."""

    def process_request(self, request: HttpRequest) -> None:
        try:
            int(request.headers.get("content-length") or 0)
        except ValueError:
            # What django-prometheus's process_request would set (its own attribute)
            request.prometheus_after_middleware_event = Time()  # type: ignore[attr-defined]
            return
        super().process_request(request)


class ProbeMiddleware:
    """Answers /healthz, /readyz and /metrics before anything else runs, so probes and
    scrapes that address a pod or container by IP (a Host header outside ALLOWED_HOSTS)
    are not refused, and cost no session, CSRF or metrics middleware. These views never
    read the Host header."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        from apps.core import views

        self.views = {"/healthz": views.healthz, "/readyz": views.readyz, "/metrics": views.metrics}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = self.views.get(request.path_info.rstrip("/"))
        return view(request) if view is not None else self.get_response(request)


class CleanTextMiddleware:
    """Refuses NUL characters and lone surrogates in the path and the query string, for every
    route at once (400 invalid_text): PostgreSQL cannot store or compare such text, so a
    filter or a name from the URL would otherwise fail inside the database. Bodies are
    checked where they are parsed (apps/core/negotiation.py)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        where = None
        if not is_clean_text(request.path_info):
            where = "the path"
        elif request.META.get("QUERY_STRING"):
            for key, values in request.GET.lists():
                if not all(is_clean_text(text) for text in (key, *values)):
                    where = f"query parameter '{key.replace(chr(0), '')[:100]}'"
                    break
        if where is None:
            return self.get_response(request)
        from apps.core.exception_handler import error_body

        message = f"NUL characters and lone surrogates are not accepted ({where})."
        if request.path_info.startswith("/v2"):  # the Open Inference Protocol's error shape
            return JsonResponse({"error": message}, status=400)
        return JsonResponse(error_body("invalid_text", message, {"where": where}), status=400)


class TrailingSlashMiddleware:
    """One rule for every route: a path answers with or without its trailing slash, and
    nothing is redirected (a client replays a redirected POST as a GET). A path that does
    not resolve is tried with its last slash toggled; the view then runs as if the client
    had asked for the route's own spelling (APPEND_SLASH is off)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path != "/" and not _resolves(request, path):
            other = path[:-1] if path.endswith("/") else f"{path}/"
            if _resolves(request, other):
                request.path_info = other
                request.path = f"{request.path[: len(request.path) - len(path)]}{other}"
        return self.get_response(request)


def _resolves(request: HttpRequest, path: str) -> bool:
    return _resolves_in(getattr(request, "urlconf", None) or settings.ROOT_URLCONF, path)


@functools.lru_cache(maxsize=4096)
def _resolves_in(urlconf: str, path: str) -> bool:
    """Cached: a resolution costs 45-70 us, a hit under 1 us; the hot paths are few."""
    from django.urls import Resolver404, get_resolver

    try:
        match = get_resolver(urlconf).resolve(path)
    except Resolver404:
        return False
    # The admin's catch-all (any path under /admin/) is a 404 or a login redirect, not a route.
    return getattr(match.func, "__name__", "") != "catch_all_view"
