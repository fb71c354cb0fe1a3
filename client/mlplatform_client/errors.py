"""The errors the client raises: the server's error answers, and a server out of reach."""

from typing import Any


class ClientError(Exception):
    """Base class of the errors this client raises."""


class ApiError(ClientError):
    """The server answered with an error status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.request_id = request_id


class TransportError(ClientError):
    """The server could not be reached (or the connection broke mid-answer)."""
