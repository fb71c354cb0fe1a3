"""A small typed client for the mlplatform batch-jobs HTTP API, on the standard library only.

Every call either returns the decoded JSON of a 2xx answer or raises:

* `ApiError` — the server answered with an error (`{"error": {"code", "message", ...}}`);
* `TransportError` — the server could not be reached, after the retries allowed.

Requests that are safe to repeat (GETs, and a submission carrying an `Idempotency-Key`)
are retried on connection errors; the server answers a repeated submission with the
job the first one created, so a retry never makes a second job.
"""

import http.client
import json
import mimetypes
import os
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, NotRequired, TypedDict

from mlplatform_client import __version__

DEFAULT_URL = "http://127.0.0.1:8000"
JOBS_PATH = "/api/v1/jobs/"
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


class Client:
    """The batch-jobs API of one server, authenticated with one API key."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 3,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"the server URL must be http:// or https://, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries

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
    ) -> SubmitResult:
        """Upload `files` as one job. The body is spooled to a temporary file, not held in memory.

        An `Idempotency-Key` is always sent (a fresh uuid4 unless given), which is what makes
        retrying the POST after a connection error safe.
        """
        if not files:
            raise ValueError("a job needs at least one input file")
        if version is not None and alias is not None:
            raise ValueError("give a version or an alias, not both")
        names = list(filenames) if filenames is not None else [path.name for path in files]
        if len(names) != len(files):
            raise ValueError("filenames must match files one to one")
        key = idempotency_key or str(uuid.uuid4())
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
                "Idempotency-Key": key,
            }
            with self._open("POST", JOBS_PATH, body=body, headers=headers, retry=True) as response:
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

    # -- plumbing -----------------------------------------------------------------------------

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
    ) -> Iterator[http.client.HTTPResponse]:
        url = self.base_url + path
        all_headers = {"Accept": accept, "User-Agent": f"mlplatform-client/{__version__}"}
        if self.api_key:
            all_headers["X-API-Key"] = self.api_key
        all_headers.update(headers or {})
        attempts = 1 + (self.retries if retry else 0)
        for attempt in range(attempts):
            if body is not None:
                body.seek(0)
            # The scheme was checked to be http(s) in __init__.
            request = urllib.request.Request(url, data=body, headers=all_headers, method=method)  # noqa: S310
            try:
                response = urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310
            except urllib.error.HTTPError as exc:
                with exc:
                    raise _api_error(exc) from None
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                # A certificate that does not verify will not verify on a second try either.
                if attempt + 1 >= attempts or isinstance(reason, ssl.SSLCertVerificationError):
                    raise TransportError(
                        f"cannot reach {self.base_url}: {reason or type(exc).__name__}"
                    ) from exc
                time.sleep(RETRY_BACKOFF_SECONDS[min(attempt, len(RETRY_BACKOFF_SECONDS) - 1)])
                continue
            with response:
                yield response
            return

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
