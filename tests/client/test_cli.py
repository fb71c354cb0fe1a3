"""Unit tests of the `mlp` command-line client (client/) against an in-test fake of the jobs API.

No database and no Django: a ThreadingHTTPServer implements just enough of the contract
(submit, poll, results, cancel, error JSON) and records every request it receives.
"""

import io
import json
import re
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

CLIENT_SRC = Path(__file__).resolve().parents[2] / "client"
if str(CLIENT_SRC) not in sys.path:
    sys.path.insert(0, str(CLIENT_SRC))

from mlplatform_client import api, cli, jobs, session  # noqa: E402

API_KEY = "test-key"
CLIENT_ID = "machine-client"
CLIENT_SECRET = "s3cret+/="  # characters that must be form-encoded before HTTP Basic


# -- the fake server ---------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message  # case-insensitive, as HTTP header names are
    body: bytes


@dataclass
class FakeJob:
    id: str
    model: str
    fields: dict[str, str]
    filenames: list[str]
    polls: int = 0
    status: str = "queued"
    done: int = 0
    fail: bool = False
    cancel_requested: bool = False

    def advance(self) -> None:
        """Each poll moves one item along: queued → running → … → succeeded (or failed)."""
        if self.status not in ("queued", "running"):
            return
        self.polls += 1
        self.done = min(self.polls, len(self.filenames))
        if self.done < len(self.filenames):
            self.status = "running"
        else:
            self.status = "failed" if self.fail else "succeeded"

    def as_json(self) -> dict[str, Any]:
        total = len(self.filenames)
        running = self.status == "running"
        return {
            "id": self.id,
            "url": f"/api/v1/jobs/{self.id}/",
            "status": self.status,
            "model": self.model,
            "version": int(self.fields.get("version", 3)),
            "alias": self.fields.get("alias"),
            "kind": "image",
            "top_k": int(self.fields.get("top_k", 5)),
            "progress": {
                "total": total,
                "done": self.done,
                "succeeded": self.done,
                "failed": 0,
                "percent": round(100 * self.done / total, 1),
                "items_per_second": 40.0 if running else None,
                "eta_seconds": (total - self.done) / 40.0 if running else None,
            },
            "cancel_requested": self.cancel_requested,
            "error": {"code": "model_crashed", "message": "The model crashed."}
            if self.status == "failed"
            else None,
            "created_at": "2024-05-01T12:00:00Z",
            "started_at": None if self.status == "queued" else "2024-05-01T12:00:01Z",
            "finished_at": "2024-05-01T12:00:02Z" if self.status in api.FINAL_STATUSES else None,
            "results_url": f"/api/v1/jobs/{self.id}/results/",
        }

    def result_lines(self) -> list[dict[str, Any]]:
        return [
            {
                "index": index,
                "filename": name,
                "status": "succeeded",
                "output": {"top_k": [{"label": "tabby", "index": 281, "score": 0.93}]},
                "error": None,
            }
            for index, name in enumerate(self.filenames)
        ]

    def jsonl(self) -> bytes:
        return b"".join(json.dumps(line).encode() + b"\n" for line in self.result_lines())

    def csv(self) -> bytes:
        rows = ["index,filename,status,label,score"]
        rows += [f"{line['index']},{line['filename']},succeeded,tabby,0.93" for line in self.result_lines()]
        return ("\r\n".join(rows) + "\r\n").encode()


@dataclass
class FakeApi:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    idempotency: dict[str, str] = field(default_factory=dict)
    drop_posts: int = 0  # close this many POST connections without answering
    fail_jobs: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    tokens: list[str] = field(default_factory=list)  # OAuth access tokens issued, in order
    revoked: set[str] = field(default_factory=set)
    token_lifetime: int = 3600
    # Answers given before any other handling, one per request: (status, code, headers).
    busy: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)

    def posts(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and r.path == "/api/v1/jobs/"]


def parse_multipart(content_type: str, body: bytes) -> list[tuple[str, str | None, str | None, bytes]]:
    """(name, filename, content type, content) per part, by hand so nothing is normalised."""
    match = re.search(r"boundary=([^;]+)", content_type)
    assert match, content_type
    dash = b"--" + match.group(1).encode()
    assert body.endswith(dash + b"--\r\n")
    parts = []
    for chunk in body[: -len(dash + b"--\r\n")].split(dash)[1:]:
        assert chunk.startswith(b"\r\n") and chunk.endswith(b"\r\n")
        head, _, content = chunk[2:-2].partition(b"\r\n\r\n")
        headers = head.decode()
        name = re.search(r'; name="([^"]*)"', headers)
        filename = re.search(r'; filename="([^"]*)"', headers)
        ctype = re.search(r"Content-Type: (\S+)", headers)
        assert name
        parts.append(
            (name.group(1), filename and filename.group(1), ctype and ctype.group(1), content),
        )
    return parts


class Handler(BaseHTTPRequestHandler):
    server: "FakeServer"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self) -> Recorded:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        recorded = Recorded(self.command, split.path, parse_qs(split.query), self.headers, body)
        with self.server.api.lock:
            self.server.api.requests.append(recorded)
        return recorded

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        error = {"code": code, "message": message, "details": details or {}, "request_id": "req-123"}
        self._send(status, {"error": error})

    def _authorised(self, recorded: Recorded) -> bool:
        if recorded.headers.get("X-API-Key") == API_KEY:
            return True
        authorization = recorded.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ")
            if token in self.server.api.tokens and token not in self.server.api.revoked:
                return True
            self._error(401, "invalid_token", "Unknown or revoked OAuth access token.")
            return False
        self._error(401, "not_authenticated", "Authentication credentials were not provided.")
        return False

    def _token(self, recorded: Recorded) -> None:
        """The OAuth token endpoint: client credentials in HTTP Basic, form-encoded first."""
        import base64
        from urllib.parse import quote_plus

        expected = base64.b64encode(f"{quote_plus(CLIENT_ID)}:{quote_plus(CLIENT_SECRET)}".encode()).decode()
        form = parse_qs(recorded.body.decode())
        if recorded.headers.get("Authorization") != f"Basic {expected}":
            self._send(401, {"error": "invalid_client", "error_description": "Client authentication failed."})
            return
        if form.get("grant_type") != ["client_credentials"]:
            self._send(400, {"error": "unsupported_grant_type"})
            return
        fake = self.server.api
        with fake.lock:
            token = f"mlpat_{len(fake.tokens)}"
            fake.tokens.append(token)
        self._send(200, {"access_token": token, "token_type": "Bearer", "expires_in": fake.token_lifetime})

    def _busy(self) -> bool:
        """Answer the next queued busy answer (429, 503...), if any."""
        with self.server.api.lock:
            if not self.server.api.busy:
                return False
            status, code, headers = self.server.api.busy.pop(0)
        error = {"code": code, "message": "Busy.", "details": {}, "request_id": "req-busy"}
        self._send(status, {"error": error}, headers)
        return True

    def _job(self, job_id: str) -> FakeJob | None:
        job = self.server.api.jobs.get(job_id)
        if job is None:
            self._error(404, "not_found", "No such job.")
        return job

    def do_POST(self) -> None:
        recorded = self._record()
        fake = self.server.api
        if recorded.path == "/oauth/token/":
            self._token(recorded)
            return
        if self._busy():
            return
        if recorded.path == "/api/v1/jobs/":
            with fake.lock:
                if fake.drop_posts:
                    fake.drop_posts -= 1
                    self.close_connection = True
                    return  # no answer at all: the client sees the connection drop
            if not self._authorised(recorded):
                return
            parts = parse_multipart(recorded.headers["Content-Type"], recorded.body)
            fields = {name: content.decode() for name, filename, _, content in parts if filename is None}
            filenames = [filename for name, filename, _, _ in parts if name == "inputs" and filename]
            for name, _, _, content in parts:
                if name == "archive":  # a zip of images: one item per member
                    import zipfile

                    filenames += zipfile.ZipFile(io.BytesIO(content)).namelist()
            if fields.get("model") == "missing":
                self._error(404, "model_not_found", "No model named 'missing'.")
                return
            if fields.get("model") == "broken":
                self.send_response(500)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(b"<h1>Server Error (500)</h1>")
                return
            # The server's rule: a quoted structured-field string (unquoted: the same key).
            key = recorded.headers.get("Idempotency-Key", "").strip('"')
            with fake.lock:
                if key and key in fake.idempotency:
                    self._send(200, fake.jobs[fake.idempotency[key]].as_json())
                    return
                job = FakeJob(str(uuid.uuid4()), fields["model"], fields, filenames, fail=fake.fail_jobs)
                fake.jobs[job.id] = job
                if key:
                    fake.idempotency[key] = job.id
            self._send(202, job.as_json(), {"Location": f"/api/v1/jobs/{job.id}/"})
            return
        match = re.fullmatch(r"/api/v1/jobs/([^/]+)/cancel/", recorded.path)
        if match and self._authorised(recorded) and (job := self._job(match.group(1))):
            if job.status in ("queued", "running"):
                job.cancel_requested = True
            self._send(200, job.as_json())
            return
        if not match:
            self._error(404, "not_found", "Not found.")

    def do_GET(self) -> None:
        recorded = self._record()
        if self._busy() or not self._authorised(recorded):
            return
        if match := re.fullmatch(r"/api/v1/jobs/([^/]+)/", recorded.path):
            if job := self._job(match.group(1)):
                with self.server.api.lock:
                    job.advance()
                self._send(200, job.as_json())
            return
        if match := re.fullmatch(r"/api/v1/jobs/([^/]+)/results/", recorded.path):
            if job := self._job(match.group(1)):
                fmt = recorded.query.get("download", ["jsonl"])[0]
                body = job.csv() if fmt == "csv" else job.jsonl()
                self.send_response(200)
                self.send_header("Content-Type", "text/csv" if fmt == "csv" else "application/x-ndjson")
                self.end_headers()  # no Content-Length: streamed until the connection closes
                for start in range(0, len(body), 7):
                    self.wfile.write(body[start : start + 7])
            return
        self._error(404, "not_found", "Not found.")


class FakeServer(ThreadingHTTPServer):
    api: FakeApi


@pytest.fixture
def server() -> Iterator[FakeApi]:
    httpd = FakeServer(("127.0.0.1", 0), Handler)
    httpd.api = FakeApi(url=f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield httpd.api
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def no_retry_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session, "RETRY_BACKOFF_SECONDS", (0.0,))
    monkeypatch.delenv("MLP_URL", raising=False)
    monkeypatch.delenv("MLP_API_KEY", raising=False)
    monkeypatch.delenv("MLP_CLIENT_ID", raising=False)
    monkeypatch.delenv("MLP_CLIENT_SECRET", raising=False)


def make_png(path: Path, color: tuple[int, int, int]) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), color).save(path, format="PNG")
    return path.read_bytes()


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    make_png(folder / "b.png", (0, 255, 0))
    make_png(folder / "a.PNG", (255, 0, 0))
    make_png(folder / "c d é.png", (0, 0, 255))
    make_png(folder / ".hidden.png", (1, 1, 1))
    make_png(folder / "sub" / "e.png", (9, 9, 9))
    (folder / "notes.txt").write_text("not an image")
    return folder


def run(server: FakeApi, *args: str) -> int:
    return cli.main(["--url", server.url, "--key", API_KEY, *args])


# -- submit ------------------------------------------------------------------------------------


def test_submit_uploads_every_image_waits_and_downloads_results(
    server: FakeApi, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.jsonl"
    code = run(
        server,
        "jobs",
        "submit",
        str(images),
        "--model",
        "resnet18",
        "--alias",
        "production",
        "--top-k",
        "3",
        "--webhook-url",
        "https://hooks.example.com/done",
        "--out",
        str(out),
        "--poll-interval",
        "0.01",
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err

    (post,) = server.posts()
    parts = parse_multipart(post.headers["Content-Type"], post.body)
    fields = {name: content.decode() for name, filename, _, content in parts if filename is None}
    assert fields == {
        "model": "resnet18",
        "alias": "production",
        "top_k": "3",
        "webhook_url": "https://hooks.example.com/done",
    }
    uploads = [(filename, ctype, content) for name, filename, ctype, content in parts if name == "inputs"]
    # Sorted by name, extensions case-insensitive; no hidden file, no text file, no subfolder.
    assert uploads == [
        ("a.PNG", "image/png", (images / "a.PNG").read_bytes()),
        ("b.png", "image/png", (images / "b.png").read_bytes()),
        ("c d é.png", "image/png", (images / "c d é.png").read_bytes()),
    ]
    assert re.fullmatch(r'"[0-9a-f-]{36}"', post.headers["Idempotency-Key"])
    assert uuid.UUID(post.headers["Idempotency-Key"].strip('"')).version == 4
    assert post.headers["X-API-Key"] == API_KEY

    (job,) = server.jobs.values()
    assert job.status == "succeeded"
    stdout_lines = captured.out.splitlines()
    assert stdout_lines[0] == job.id
    assert stdout_lines[-1] == f"job {job.id} succeeded: 3 succeeded, 0 failed of 3; results in {out}"

    # Not a TTY: one progress line per change, ending on the final state.
    progress = [line for line in captured.err.splitlines() if line.startswith("[")]
    assert progress[0].endswith("queued")
    assert any("img/s" in line and "ETA" in line for line in progress)
    assert progress[-1] == f"[{'#' * cli.BAR_WIDTH}]  3/3  100%  succeeded"
    assert len(progress) == len(set(progress))

    assert out.read_bytes() == job.jsonl()
    assert [json.loads(line)["filename"] for line in out.read_text().splitlines()] == [
        "a.PNG",
        "b.png",
        "c d é.png",
    ]
    assert not out.with_name(out.name + ".part").exists()
    results_get = [r for r in server.requests if r.path.endswith("/results/")]
    assert [r.query for r in results_get] == [{"download": ["jsonl"]}]
    assert not [r for r in server.requests if r.path.endswith("/cancel/")]


def test_submit_retries_a_dropped_connection_with_the_same_idempotency_key(
    server: FakeApi, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.drop_posts = 1
    code = run(server, "jobs", "submit", str(images), "--model", "resnet18", "--no-wait")
    assert code == 0, capsys.readouterr().err
    first, second = server.posts()
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert first.body == second.body
    assert len(server.jobs) == 1


def test_submit_gives_up_after_three_retries(
    server: FakeApi, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.drop_posts = 10
    code = run(server, "jobs", "submit", str(images), "--model", "resnet18", "--no-wait")
    assert code == 1
    assert "error: cannot reach" in capsys.readouterr().err
    assert len(server.posts()) == 4  # the first try and three retries
    assert len({post.headers["Idempotency-Key"] for post in server.posts()}) == 1
    assert not server.jobs


def test_resubmitting_with_the_same_idempotency_key_returns_the_same_job(
    server: FakeApi, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("jobs", "submit", str(images), "--model", "resnet18", "--no-wait", "--idempotency-key", "k-1")
    assert run(server, *args) == 0
    first = capsys.readouterr()
    assert run(server, *args) == 0
    second = capsys.readouterr()
    assert first.out == second.out  # just the job id, twice
    assert len(server.jobs) == 1
    assert "was used before" in second.err
    assert [post.headers["Idempotency-Key"] for post in server.posts()] == ['"k-1"', '"k-1"']


def test_submit_csv_format_with_default_output_name(
    server: FakeApi, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = run(
        server,
        *("jobs", "submit", str(images), "--model", "m", "--version", "2"),
        *("--format", "csv", "--recursive", "--poll-interval", "0.01"),
    )
    assert code == 0
    (job,) = server.jobs.values()
    assert job.fields["version"] == "2"
    assert job.filenames == ["a.PNG", "b.png", "c d é.png", "sub/e.png"]
    assert (tmp_path / f"{job.id}.csv").read_bytes() == job.csv()
    (results_get,) = [r for r in server.requests if r.path.endswith("/results/")]
    assert results_get.query == {"download": ["csv"]}


def test_no_wait_prints_only_the_job_id(
    server: FakeApi, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(server, "jobs", "submit", str(images), "--model", "m", "--no-wait") == 0
    (job,) = server.jobs.values()
    assert capsys.readouterr().out == f"{job.id}\n"
    assert [r.method for r in server.requests] == ["POST"]


def test_a_failed_job_exits_1_and_prints_its_error(
    server: FakeApi, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.fail_jobs = True
    out = tmp_path / "r.jsonl"
    code = run(
        server, "jobs", "submit", str(images), "--model", "m", "--out", str(out), "--poll-interval", "0.01"
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "error model_crashed: The model crashed." in captured.err
    assert "job " in captured.out and " failed: 3 succeeded" in captured.out
    assert out.exists()  # what was done is still downloaded


def test_empty_folder_exits_2(server: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    code = run(server, "jobs", "submit", str(tmp_path), "--model", "m")
    assert code == 2
    assert f"no images in {tmp_path}" in capsys.readouterr().err
    assert not server.requests


def test_missing_folder_and_missing_key_exit_2(
    server: FakeApi, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(server, "jobs", "submit", str(tmp_path / "nope"), "--model", "m") == 2
    assert "is not a folder" in capsys.readouterr().err
    assert cli.main(["--url", server.url, "jobs", "submit", str(images), "--model", "m"]) == 2
    assert "no API key" in capsys.readouterr().err
    assert not server.requests


def test_bad_arguments_exit_2(server: FakeApi, images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(server, "jobs", "submit", str(images), "--model", "m", "--version", "1", "--alias", "a") == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert run(server, "jobs", "submit", str(images)) == 2
    assert not server.requests


def test_server_error_json_exits_1_with_its_code(
    server: FakeApi, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(server, "jobs", "submit", str(images), "--model", "missing")
    err = capsys.readouterr().err
    assert code == 1
    assert "error model_not_found: No model named 'missing'." in err
    assert "req-123" in err


def test_non_json_server_error_exits_1(
    server: FakeApi, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(server, "jobs", "submit", str(images), "--model", "broken") == 1
    assert "error http_500:" in capsys.readouterr().err


def test_wrong_key_is_reported(
    server: FakeApi, images: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # URL and key from the environment this time.
    monkeypatch.setenv("MLP_URL", server.url)
    monkeypatch.setenv("MLP_API_KEY", "wrong")
    assert cli.main(["jobs", "status", "abc"]) == 1
    assert "error not_authenticated:" in capsys.readouterr().err
    assert server.requests[0].headers["X-API-Key"] == "wrong"


def test_ctrl_c_while_waiting_explains_how_to_resume_and_does_not_cancel(
    server: FakeApi, images: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: api.Client, job_id: str) -> api.Job:
        raise KeyboardInterrupt

    monkeypatch.setattr(api.Client, "get_job", interrupted)
    code = run(server, "jobs", "submit", str(images), "--model", "m", "--poll-interval", "0.01")
    captured = capsys.readouterr()
    (job,) = server.jobs.values()
    assert code == 130
    assert f"mlp jobs status {job.id}" in captured.err
    assert not [r for r in server.requests if r.path.endswith("/cancel/")]
    assert job.status == "queued"


def test_connection_refused_is_reported(
    images: Path, capsys: pytest.CaptureFixture[str], unused_port: int
) -> None:
    code = cli.main(["--url", f"http://127.0.0.1:{unused_port}", "--key", API_KEY, "jobs", "status", "x"])
    assert code == 1
    assert "error: cannot reach" in capsys.readouterr().err


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- status, results, cancel -------------------------------------------------------------------


def submitted(server: FakeApi, images: Path, capsys: pytest.CaptureFixture[str]) -> FakeJob:
    assert run(server, "jobs", "submit", str(images), "--model", "resnet18", "--no-wait") == 0
    capsys.readouterr()
    (job,) = server.jobs.values()
    return job


def test_status(server: FakeApi, images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = submitted(server, images, capsys)
    assert run(server, "jobs", "status", job.id) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"job {job.id}: running\n")
    assert "resnet18 v3" in out and "1/3" in out

    assert run(server, "jobs", "status", job.id, "--json") == 0
    assert json.loads(capsys.readouterr().out)["progress"]["done"] == 2


def test_status_wait_follows_to_the_end(
    server: FakeApi, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = submitted(server, images, capsys)
    # Options may also come after the command.
    code = cli.main(
        ["jobs", "status", job.id, "--wait", "--poll-interval", "0.01", "--url", server.url, "--key", API_KEY]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.startswith(f"job {job.id}: succeeded\n")
    assert captured.err.splitlines()[-1].endswith("3/3  100%  succeeded")


def test_status_of_unknown_job(server: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(server, "jobs", "status", "no-such-job") == 1
    assert "error not_found: No such job." in capsys.readouterr().err


def test_results_command(
    server: FakeApi, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = submitted(server, images, capsys)
    out = tmp_path / "out.csv"
    assert run(server, "jobs", "results", job.id, "--out", str(out)) == 0  # format from the extension
    assert out.read_bytes() == job.csv()
    assert run(server, "jobs", "results", job.id, "--out", "-") == 0
    assert capsys.readouterr().out.encode() == job.jsonl()


def test_cancel_command(server: FakeApi, images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = submitted(server, images, capsys)
    assert run(server, "jobs", "cancel", job.id) == 0
    assert capsys.readouterr().out.startswith(f"job {job.id}: queued (cancel requested")
    assert job.cancel_requested


# -- pieces ------------------------------------------------------------------------------------


def test_collect_images(images: Path) -> None:
    assert [p.name for p in cli.collect_images(images)] == ["a.PNG", "b.png", "c d é.png"]
    assert [p.relative_to(images).as_posix() for p in cli.collect_images(images, recursive=True)] == [
        "a.PNG",
        "b.png",
        "c d é.png",
        "sub/e.png",
    ]


def test_progress_on_a_terminal_rewrites_one_line() -> None:
    stream = io.StringIO()
    printer = cli.ProgressPrinter(stream, tty=True)
    running = {
        "id": "j",
        "status": "running",
        "progress": {
            "total": 500,
            "done": 312,
            "percent": 62.4,
            "items_per_second": 41.3,
            "eta_seconds": 4.6,
        },
    }
    printer.update(cast(api.Job, running))
    printer.update(cast(api.Job, running))  # redrawn in place, even when nothing changed
    done = {"id": "j", "status": "succeeded", "progress": {"total": 500, "done": 500, "percent": 100.0}}
    printer.update(cast(api.Job, done))
    printer.finish()
    first_line = f"[{'#' * 19}{'.' * 11}]  312/500   62%  41.3 img/s  ETA 5s"
    last_line = f"[{'#' * 30}]  500/500  100%  succeeded"
    padding = " " * (len(first_line) - len(last_line))
    assert stream.getvalue() == f"\r{first_line}\r{first_line}\r{last_line}{padding}\n"


def test_format_duration() -> None:
    assert [cli.format_duration(s) for s in (0, 4.6, 59, 60, 125, 3600, 7322)] == [
        "0s",
        "5s",
        "59s",
        "1m00s",
        "2m05s",
        "1h00m",
        "2h02m",
    ]


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "mlp 0.1.0"
    assert cli.main(["jobs", "submit", "--help"]) == 0
    assert "--idempotency-key" in capsys.readouterr().out


def test_many_images_travel_as_one_zip_archive(
    server: FakeApi, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import zipfile

    monkeypatch.setattr(jobs, "MAX_MULTIPART_FILES", 2)
    code = run(server, "jobs", "submit", str(images), "--model", "m", "--no-wait")
    assert code == 0
    (post,) = server.posts()
    parts = parse_multipart(post.headers["Content-Type"], post.body)
    files = [(name, filename, content) for name, filename, _, content in parts if filename is not None]
    assert [(name, filename) for name, filename, _ in files] == [("archive", "inputs.zip")]
    with zipfile.ZipFile(io.BytesIO(files[0][2])) as archive:
        names = archive.namelist()
        assert names == [p.name for p in cli.collect_images(images)]
        assert archive.read(names[0]) == (images / names[0]).read_bytes()
