"""Command-line client for the mlplatform batch-jobs API (standard library only)."""

__version__ = "0.1.0"

from mlplatform_client.api import (
    ApiError,
    Client,
    ClientCredentials,
    ClientError,
    Job,
    SubmitResult,
    TransportError,
)

__all__ = [
    "ApiError",
    "Client",
    "ClientCredentials",
    "ClientError",
    "Job",
    "SubmitResult",
    "TransportError",
    "__version__",
]
