"""The batch-jobs resource: submit a folder's images as one job, look at it, cancel it, and
stream its results. The job JSON's types live here too."""

import http.client
import os
import tempfile
import urllib.parse
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, NotRequired, TypedDict

from mlplatform_client.errors import TransportError
from mlplatform_client.multipart import CHUNK_SIZE, write_multipart
from mlplatform_client.session import Session
from mlplatform_client.transfer import ProgressReader, quoted_key

JOBS_PATH = "/api/v1/jobs/"
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
ResultFormat = Literal["jsonl", "csv"]
RESULT_FORMATS: tuple[ResultFormat, ...] = ("jsonl", "csv")
# Above this many images, the upload is one zip archive rather than one part per image.
MAX_MULTIPART_FILES = 500


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


@dataclass(frozen=True)
class SubmitResult:
    job: Job
    created: bool  # False when the server returned the job of an earlier, identical submission
    idempotency_key: str
    location: str | None


class JobsApi(Session):
    """The calls of the batch-jobs API."""

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

    def _job_path(self, job_id: str, suffix: str = "") -> str:
        return f"{JOBS_PATH}{urllib.parse.quote(job_id, safe='')}/{suffix}"
