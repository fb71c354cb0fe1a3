"""Errors raised by services and turned into the one API error shape.

A service raises `ApplicationError` (or a subclass) with a stable `code`;
the exception handler renders it as
`{"error": {"code", "message", "details", "request_id"}}` with `status_code`.
"""

from typing import Any


class ApplicationError(Exception):
    status_code = 400
    code = "invalid_input"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.details = details or {}


class InvalidInput(ApplicationError):
    status_code = 400
    code = "invalid_input"


class UnprocessableInput(ApplicationError):
    """The request is well formed but its content cannot be used (for example not ONNX)."""

    status_code = 422
    code = "unprocessable"


class NotFound(ApplicationError):
    status_code = 404
    code = "not_found"


class Conflict(ApplicationError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(ApplicationError):
    status_code = 413
    code = "payload_too_large"


class ServiceUnavailable(ApplicationError):
    """A dependency (database, cache, broker) is down; the client may retry."""

    status_code = 503
    code = "service_unavailable"
