"""A small typed client for the mlplatform batch-jobs HTTP API, on the standard library only.

It authenticates with an API key, or with OAuth 2.0 client credentials: it then fetches an
access token from the server's token endpoint, and a new one shortly before that expires or
when the server refuses it (revoked), with no help from the caller.

Every call either returns the decoded JSON of a 2xx answer or raises:

* `ApiError` — the server answered with an error (`{"error": {"code", "message", ...}}`);
* `TransportError` — the server could not be reached, after the retries allowed.

Requests that are safe to repeat (GETs, and a submission carrying an `Idempotency-Key`)
are retried on connection errors; the server answers a repeated submission with the
job the first one created, so a retry never makes a second job. A busy answer is tried
again after the wait its `Retry-After` asks for (seconds or an HTTP-date; a short backoff
without one), within the same number of retries and at most `max_retry_wait` seconds a
wait: 429 for any request, 503 for requests safe to repeat, and 409
`idempotency_key_in_use` (the key's first request is still being processed).

The client is composed of one module per part, all importable from here as before:
`session` (a request and its retries), `oauth` (client credentials and their access token),
`jobs` (the batch-jobs calls and the job JSON), `multipart` (the upload body) and `errors`.
"""

import time
import urllib.parse
from collections.abc import Callable

from mlplatform_client.errors import ApiError, ClientError, TransportError
from mlplatform_client.jobs import (
    FINAL_STATUSES,
    JOBS_PATH,
    MAX_MULTIPART_FILES,
    RESULT_FORMATS,
    Job,
    JobErrorInfo,
    JobsApi,
    Progress,
    ResultFormat,
    SubmitResult,
)
from mlplatform_client.multipart import CHUNK_SIZE, content_type_for, write_multipart
from mlplatform_client.oauth import TOKEN_PATH, TOKEN_RENEW_MARGIN_SECONDS, ClientCredentials, OAuthSession
from mlplatform_client.session import RETRY_BACKOFF_SECONDS

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_URL",
    "FINAL_STATUSES",
    "JOBS_PATH",
    "MAX_MULTIPART_FILES",
    "RESULT_FORMATS",
    "RETRY_BACKOFF_SECONDS",
    "TOKEN_PATH",
    "TOKEN_RENEW_MARGIN_SECONDS",
    "ApiError",
    "Client",
    "ClientCredentials",
    "ClientError",
    "Job",
    "JobErrorInfo",
    "Progress",
    "ResultFormat",
    "SubmitResult",
    "TransportError",
    "content_type_for",
    "write_multipart",
]

DEFAULT_URL = "http://127.0.0.1:8000"


class Client(JobsApi, OAuthSession):
    """The batch-jobs API of one server, authenticated with an API key or OAuth 2.0 client
    credentials (`credentials`)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        credentials: ClientCredentials | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        max_retry_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"the server URL must be http:// or https://, not {base_url!r}")
        if api_key and credentials:
            raise ValueError("authenticate with an API key or with client credentials, not both")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.credentials = credentials
        self.timeout = timeout
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self.sleep = sleep
