"""The one place that turns exceptions into the API error shape.

Every error, whether raised by our services, by DRF (validation, auth, parsing,
throttling) or by Django (404, permission denied), leaves as:

    {"error": {"code": "...", "message": "...", "details": {...}, "request_id": "..."}}
"""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.core.exceptions import ApplicationError
from apps.core.middleware import current_request_id

logger = logging.getLogger(__name__)

# Stable codes for DRF's exception classes; checked in order (subclasses first).
_DRF_CODES: list[tuple[type[drf.APIException], str, str | None]] = [
    (drf.ValidationError, "invalid_input", "The request is invalid."),
    (drf.ParseError, "malformed_request", None),
    (drf.NotAuthenticated, "not_authenticated", None),
    (drf.AuthenticationFailed, "authentication_failed", None),
    (drf.PermissionDenied, "permission_denied", None),
    (drf.NotFound, "not_found", None),
    (drf.MethodNotAllowed, "method_not_allowed", None),
    (drf.NotAcceptable, "not_acceptable", None),
    (drf.UnsupportedMediaType, "unsupported_media_type", None),
    (drf.Throttled, "throttled", None),
]


# Exceptions from outside DRF that are the request's fault: (class, status, code, message).
_OTHER_ERRORS: list[tuple[type[BaseException], int, str, str]] = [
    (RequestDataTooBig, 413, "payload_too_large", "The request body is too large."),
    # too many files or fields, a malformed body...
    (SuspiciousOperation, 400, "bad_request", "The request cannot be processed."),
    # JSON nested deeper than the parser can follow
    (RecursionError, 400, "malformed_request", "The request body is nested too deeply."),
]


def error_body(code: str, message: str, details: dict[str, Any] | list[Any] | None = None) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details or {},
            "request_id": current_request_id(),
        }
    }


def drf_error_code(exc: drf.APIException) -> tuple[str, str]:
    """The code and message of the error body for one of DRF's exceptions."""
    code, message = "error", "Request failed."
    for cls, cls_code, cls_message in _DRF_CODES:
        if isinstance(exc, cls):
            code, message = cls_code, cls_message or str(exc.detail)
            break
    specific = getattr(exc.detail, "code", None)
    if specific and specific != exc.default_code and not isinstance(exc, drf.ValidationError):
        code = str(specific)  # e.g. AuthenticationFailed(..., code="api_key_revoked")
    if isinstance(exc.detail, dict) and "code" in exc.detail and not isinstance(exc, drf.ValidationError):
        # simplejwt: {"detail": ..., "code": "token_not_valid", "messages": [...]}
        code, message = str(exc.detail["code"]), str(exc.detail.get("detail", message))
    return code, message


def describe_error(exc: BaseException) -> tuple[str, str] | None:
    """The code and message of the error body `exc` becomes; None when it is a 500."""
    if isinstance(exc, ApplicationError):
        return exc.code, exc.message
    for cls, _status, code, message in _OTHER_ERRORS:
        if isinstance(exc, cls):
            return code, message
    if isinstance(exc, DjangoValidationError):
        return "invalid_input", "The request is invalid."
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    if isinstance(exc, drf.APIException):
        return drf_error_code(exc)
    return None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    if isinstance(exc, ApplicationError):
        answer = Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
        retry_after = getattr(exc, "retry_after", None)  # some subclasses have one
        if retry_after:
            answer["Retry-After"] = str(retry_after)
        return answer
    for cls, status, code, message in _OTHER_ERRORS:
        if isinstance(exc, cls):
            return Response(error_body(code, message), status=status)
    if isinstance(exc, DjangoValidationError):
        field_errors = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        return Response(error_body("invalid_input", "The request is invalid.", field_errors), status=400)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()

    response = drf_exception_handler(exc, context)
    # DRF answers exactly its own exceptions (APIException), so the second test only narrows.
    if response is None or not isinstance(exc, drf.APIException):
        # Not an API error: a bug. Log it with its traceback and answer 500 in our shape.
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
        return Response(error_body("internal_error", "An internal error occurred."), status=500)

    code, message = drf_error_code(exc)
    details: Any = {}
    if isinstance(exc.detail, dict) and "code" in exc.detail and not isinstance(exc, drf.ValidationError):
        details = {"messages": exc.detail.get("messages", [])}
    if isinstance(exc, drf.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
    # DRF sets Throttled.wait; the stubs leave the attribute out.
    elif isinstance(exc, drf.Throttled) and exc.wait is not None:  # type: ignore[attr-defined]
        details = {"retry_after": int(exc.wait)}  # type: ignore[attr-defined]
    response.data = error_body(code, message, details)
    return response


# --- Django-level handlers, for errors that never reach a DRF view -------------------


def json_error(code: str, message: str, status: int) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status)


def handler400(request: Any, exception: Exception | None = None) -> JsonResponse:
    return json_error("bad_request", "Bad request.", 400)


def handler403(request: Any, exception: Exception | None = None) -> JsonResponse:
    return json_error("permission_denied", "You do not have permission to perform this action.", 403)


def handler404(request: Any, exception: Exception | None = None) -> JsonResponse:
    message = f"No resource at {request.path}."
    if request.path.startswith("/v2/"):  # the Open Inference Protocol's error shape
        return JsonResponse({"error": message}, status=404)
    return json_error("not_found", message, 404)


def handler500(request: Any) -> JsonResponse:
    return json_error("internal_error", "An internal error occurred.", 500)
