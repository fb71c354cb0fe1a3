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
"""

import base64
import http.client
import io
import json
import mimetypes
import os
import shutil
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, NotRequired, TypedDict

from mlplatform_client import __version__
from mlplatform_client.transfer import ProgressReader, quoted_key, retry_after_seconds, worth_retrying

DEFAULT_URL = "http://127.0.0.1:8000"
JOBS_PATH = "/api/v1/jobs/"
TOKEN_PATH = "/oauth/token/"  # noqa: S105 (a path, not a secret)
# An access token is fetched again this long before it expires (at most half its lifetime),
# so that no request leaves with a token about to lapse.
TOKEN_RENEW_MARGIN_SECONDS = 30.0
# The server's codes for a token it no longer takes: fetch a new one and send the request again.
_STALE_TOKEN_CODES = frozenset({"invalid_token", "token_expired"})
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
ResultFormat = Literal["jsonl", "csv"]
RESULT_FORMATS: tuple[ResultFormat, ...] = ("jsonl", "csv")

# Pause before each retry of a request that failed to connect (the last value repeats).
RETRY_BACKOFF_SECONDS: tuple[float, ...] = (0.5, 1.0, 2.0)
CHUNK_SIZE = 64 * 1024
# Above this many images, the upload is one zip archive rather than one part per image.
MAX_MULTIPART_FILES = 500

# mimetypes knows most of these, but its answers vary with the platform's tables.
_IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".gif": "image/gif",
}


class Progress(TypedDict):
    total: int
    done: int
    succeeded: int
    failed: int
    percent: float
    items_per_second: float | None
    eta_seconds: float | None


class JobErrorInfo(TypedDict):
    code: str
    message: str


class Job(TypedDict):
    """The job JSON of the server (only `id` and `status` are relied upon to be present)."""

    id: str
    status: str
    url: NotRequired[str]
    model: NotRequired[str]
    version: NotRequired[int]
    alias: NotRequired[str | None]
    kind: NotRequired[str]
    top_k: NotRequired[int]
    progress: NotRequired[Progress]
    cancel_requested: NotRequired[bool]
    error: NotRequired[JobErrorInfo | None]
    created_at: NotRequired[str | None]
    started_at: NotRequired[str | None]
    finished_at: NotRequired[str | None]
    results_url: NotRequired[str]


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


@dataclass(frozen=True)
class SubmitResult:
    job: Job
    created: bool  # False when the server returned the job of an earlier, identical submission
    idempotency_key: str
    location: str | None


def content_type_for(path: Path) -> str:
    known = _IMAGE_TYPES.get(path.suffix.lower())
    return known or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _quote_disposition(value: str) -> bytes:
    # What browsers do (HTML spec, multipart/form-data): UTF-8, with `"`, CR and LF percent-encoded.
    escaped = value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    return escaped.encode()


def write_multipart(
    out: IO[bytes],
    boundary: str,
    fields: Sequence[tuple[str, str]],
    files: Sequence[tuple[str, str, Path]],
) -> None:
    """Write a multipart/form-data body: `fields` are (name, value), `files` (name, filename, path)."""
    dash = b"--" + boundary.encode("ascii")
    for name, value in fields:
        out.write(dash + b"\r\n")
        out.write(b'Content-Disposition: form-data; name="' + _quote_disposition(name) + b'"\r\n\r\n')
        out.write(value.encode() + b"\r\n")
    for name, filename, path in files:
        out.write(dash + b"\r\n")
        out.write(
            b'Content-Disposition: form-data; name="'
            + _quote_disposition(name)
            + b'"; filename="'
            + _quote_disposition(filename)
            + b'"\r\n'
        )
        out.write(b"Content-Type: " + content_type_for(path).encode("ascii") + b"\r\n\r\n")
        with path.open("rb") as source:
            shutil.copyfileobj(source, out, CHUNK_SIZE)
        out.write(b"\r\n")
    out.write(dash + b"--\r\n")


class ClientCredentials:
    """OAuth 2.0 client credentials (RFC 6749 §4.4) and the access token they last got. The
    grant has no refresh token: refreshing is asking for a new token."""

    def __init__(self, client_id: str, client_secret: str, *, scope: str | None = None) -> None:
        if not client_id or not client_secret:
            raise ValueError("client credentials need both a client id and a client secret")
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self.token: str | None = None
        self.renew_at = 0.0  # time.monotonic() after which the token is fetched again
        self.lock = threading.Lock()

    def basic_authorization(self) -> str:
        # RFC 6749 §2.3.1: id and secret are form-encoded before they are joined and encoded.
        pair = f"{urllib.parse.quote_plus(self.client_id)}:{urllib.parse.quote_plus(self.client_secret)}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    def keep(self, token: str, expires_in: float) -> None:
        self.token = token
        self.renew_at = time.monotonic() + expires_in - min(TOKEN_RENEW_MARGIN_SECONDS, expires_in / 2)


class Client:
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

    # -- the API ------------------------------------------------------------------------------

    def submit_job(
        self,
        model: str,
        files: Sequence[Path],
        *,
        version: int | None = None,
        alias: str | None = None,
        top_k: int | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        filenames: Sequence[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> SubmitResult:
        """Upload `files` as one job. The body is spooled to a temporary file, not held in memory,
        and streamed from it; `progress(sent, total)` is called as it goes (see `UploadBar`).

        An `Idempotency-Key` is always sent, quoted (a fresh uuid4 unless given), which is what
        makes retrying the POST after a connection error safe.
        """
        if not files:
            raise ValueError("a job needs at least one input file")
        if version is not None and alias is not None:
            raise ValueError("give a version or an alias, not both")
        names = list(filenames) if filenames is not None else [path.name for path in files]
        if len(names) != len(files):
            raise ValueError("filenames must match files one to one")
        key = idempotency_key or str(uuid.uuid4())
        header_key = quoted_key(key)
        fields = [("model", model)]
        if version is not None:
            fields.append(("version", str(version)))
        if alias is not None:
            fields.append(("alias", alias))
        if top_k is not None:
            fields.append(("top_k", str(top_k)))
        if webhook_url:
            fields.append(("webhook_url", webhook_url))
        boundary = f"mlp-{uuid.uuid4().hex}"
        with (
            tempfile.TemporaryDirectory(prefix="mlp-upload-") as scratch,
            (Path(scratch) / "body").open("w+b") as body,
        ):
            parts = [("inputs", name, path) for name, path in zip(names, files, strict=True)]
            if len(parts) > MAX_MULTIPART_FILES:
                # Servers cap the file parts of one request (Django: 1,000): send one zip instead.
                archive = Path(scratch) / "inputs.zip"
                with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as packed:
                    for _, name, path in parts:
                        packed.write(path, arcname=name)
                parts = [("archive", "inputs.zip", archive)]
            write_multipart(body, boundary, fields, parts)
            headers = {
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(body.tell()),
                "Idempotency-Key": header_key,
            }
            upload = ProgressReader(body, body.tell(), progress) if progress else body
            with self._open("POST", JOBS_PATH, body=upload, headers=headers, retry=True) as response:
                job = self._read_json(response)
                created = response.status != 200
                location = response.headers.get("Location")
        return SubmitResult(job=job, created=created, idempotency_key=key, location=location)

    def get_job(self, job_id: str) -> Job:
        with self._open("GET", self._job_path(job_id), retry=True) as response:
            return self._read_json(response)

    def cancel_job(self, job_id: str) -> Job:
        # Asking twice to cancel is harmless, so this is retried too.
        with self._open("POST", self._job_path(job_id, "cancel/"), retry=True) as response:
            return self._read_json(response)

    def stream_results(self, job_id: str, out: IO[bytes], fmt: ResultFormat = "jsonl") -> int:
        """Copy the job's results (JSON Lines or CSV) into `out` as they arrive; returns bytes written."""
        if fmt not in RESULT_FORMATS:
            raise ValueError(f"unknown results format {fmt!r}")
        path = self._job_path(job_id, "results/") + "?" + urllib.parse.urlencode({"download": fmt})
        written = 0
        with self._open("GET", path, retry=True, accept="*/*") as response:
            try:
                while chunk := response.read(CHUNK_SIZE):
                    out.write(chunk)
                    written += len(chunk)
            except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:
                raise TransportError(f"the download of job {job_id}'s results broke off: {exc}") from exc
        return written

    def download_results(self, job_id: str, dest: Path, fmt: ResultFormat = "jsonl") -> int:
        """Stream the results to `dest` (through `dest.part`, renamed once complete); returns bytes."""
        partial = dest.with_name(dest.name + ".part")
        try:
            with partial.open("wb") as out:
                written = self.stream_results(job_id, out, fmt)
            os.replace(partial, dest)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return written

    # -- OAuth 2.0 -----------------------------------------------------------------------------

    def access_token(self) -> str:
        """The client-credentials access token, fetched now if there is none or it is about
        to expire."""
        credentials = self.credentials
        assert credentials is not None
        with credentials.lock:
            if credentials.token is None or time.monotonic() >= credentials.renew_at:
                self._fetch_token(credentials)
            assert credentials.token is not None
            return credentials.token

    def _fetch_token(self, credentials: ClientCredentials) -> None:
        form = {"grant_type": "client_credentials"}
        if credentials.scope:
            form["scope"] = credentials.scope
        encoded = urllib.parse.urlencode(form).encode()
        body = io.BytesIO(encoded)
        headers = {
            "Authorization": credentials.basic_authorization(),
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Length": str(len(encoded)),
        }
        # Safe to repeat: a second request only mints a second token.
        with self._open(
            "POST", TOKEN_PATH, body=body, headers=headers, retry=True, authenticate=False
        ) as response:
            answer = self._read_json(response)
        try:
            credentials.keep(str(answer["access_token"]), float(answer.get("expires_in") or 300))
        except (KeyError, TypeError, ValueError):
            message = "the token endpoint's answer has no access token"
            raise ApiError(response.status, "bad_response", message) from None

    def _authorization(self) -> dict[str, str]:
        if self.api_key:
            return {"X-API-Key": self.api_key}
        if self.credentials is not None:
            return {"Authorization": f"Bearer {self.access_token()}"}
        return {}

    def _renews_token_after(self, error: "ApiError") -> bool:
        """Whether `error` refused our access token (revoked, expired early): forget it, so
        the request can go again with a new one."""
        if self.credentials is None or error.status != 401 or error.code not in _STALE_TOKEN_CODES:
            return False
        with self.credentials.lock:
            self.credentials.token = None
        return True

    # -- plumbing -----------------------------------------------------------------------------

    def request_json(self, method: str, path: str, payload: Any = None, *, retry: bool = False) -> Any:
        """Any JSON call of the API (`path` from the server's root, e.g. /api/v1/models/m/rollouts/):
        the body as JSON, the answer read as JSON; errors as ApiError. `retry` for safe calls."""
        data = json.dumps(payload).encode() if payload is not None else None
        body = io.BytesIO(data) if data is not None else None
        headers = {"Content-Type": "application/json", "Content-Length": str(len(data))} if data else None
        with self._open(method, path, body=body, headers=headers, retry=retry) as response:
            return self._read_json(response)

    def _job_path(self, job_id: str, suffix: str = "") -> str:
        return f"{JOBS_PATH}{urllib.parse.quote(job_id, safe='')}/{suffix}"

    @contextmanager
    def _open(
        self,
        method: str,
        path: str,
        *,
        body: IO[bytes] | None = None,
        headers: dict[str, str] | None = None,
        retry: bool = False,
        accept: str = "application/json",
        authenticate: bool = True,
    ) -> Iterator[http.client.HTTPResponse]:
        url = self.base_url + path
        attempts = 1 + (self.retries if retry else 0)
        attempt = 0
        busy = 0  # busy answers (429, 503...) tried again so far
        renewed = False  # a refused access token is renewed once per request
        while True:
            all_headers = {"Accept": accept, "User-Agent": f"mlplatform-client/{__version__}"}
            if authenticate:
                all_headers.update(self._authorization())
            all_headers.update(headers or {})
            if body is not None:
                body.seek(0)
            # The scheme was checked to be http(s) in __init__.
            request = urllib.request.Request(url, data=body, headers=all_headers, method=method)  # noqa: S310
            try:
                response = urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310
            except urllib.error.HTTPError as exc:
                with exc:
                    error = _api_error(exc)
                # The server refused the request before doing anything: sending it again is safe.
                if authenticate and not renewed and self._renews_token_after(error):
                    renewed = True
                    continue
                wait = self._busy_wait(error, exc.headers, safe=retry, tried=busy)
                if wait is None:
                    raise error from None
                busy += 1
                self.sleep(wait)
                continue
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                attempt += 1
                # A certificate that does not verify will not verify on a second try either.
                if attempt >= attempts or isinstance(reason, ssl.SSLCertVerificationError):
                    raise TransportError(
                        f"cannot reach {self.base_url}: {reason or type(exc).__name__}"
                    ) from exc
                time.sleep(RETRY_BACKOFF_SECONDS[min(attempt - 1, len(RETRY_BACKOFF_SECONDS) - 1)])
                continue
            with response:
                yield response
            return

    def _busy_wait(self, error: "ApiError", headers: Any, *, safe: bool, tried: int) -> float | None:
        """Seconds to wait before sending the request again after `error`, or None to give up:
        not a busy answer, no retries left, or a `Retry-After` longer than `max_retry_wait`."""
        if tried >= self.retries or not worth_retrying(error.status, error.code, safe=safe):
            return None
        wait = retry_after_seconds(headers.get("Retry-After") if headers else None)
        if wait is None:
            wait = RETRY_BACKOFF_SECONDS[min(tried, len(RETRY_BACKOFF_SECONDS) - 1)]
        return wait if wait <= self.max_retry_wait else None

    @staticmethod
    def _read_json(response: http.client.HTTPResponse) -> Any:
        try:
            raw = response.read()
        except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            raise TransportError(f"the answer broke off: {exc}") from exc
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(response.status, "bad_response", "the server's answer is not JSON") from None


def _api_error(exc: urllib.error.HTTPError) -> ApiError:
    request_id = exc.headers.get("X-Request-ID") if exc.headers else None
    try:
        raw = exc.read()
    except (http.client.HTTPException, OSError):
        raw = b""
    try:
        error = json.loads(raw)["error"]
        if isinstance(error, str):  # an OAuth endpoint's answer (RFC 6749 §5.2)
            description = json.loads(raw).get("error_description") or error
            return ApiError(exc.code, error, str(description), request_id=request_id)
        return ApiError(
            exc.code,
            str(error.get("code") or f"http_{exc.code}"),
            str(error.get("message") or exc.reason),
            details=error.get("details") if isinstance(error.get("details"), dict) else None,
            request_id=error.get("request_id") or request_id,
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        text = raw.decode(errors="replace").strip()
        message = text[:200] if text and not text.lstrip().startswith("<") else str(exc.reason)
        return ApiError(exc.code, f"http_{exc.code}", message, request_id=request_id)
