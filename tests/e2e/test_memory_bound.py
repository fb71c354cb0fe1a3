"""Bounded memory on every door: a live gunicorn (production settings, PostgreSQL, Redis) is
sent a body over each door's limit on each upload path, streamed from a generator (nothing
of that size is ever allocated here), and the web process's peak resident memory (VmHWM)
must stay within 200 MB of what it was once warmed up. Each body is answered 413.

Before the fix, a 1 GiB raw image body to predict became a job (202) and the worker grew by
about 1 GB: the raw-body parser read the whole body into memory."""

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests import live
from tests.inference.conftest import TINY_PREPROCESSING
from tests.live import wait_for
from tests.onnx_models import tiny_classifier

pytestmark = pytest.mark.e2e

MB = 1024 * 1024
BOUND = 200 * MB
BOUNDARY = "mlpMemoryBoundary"


@pytest.fixture(scope="module")
def server(e2e_dir: Path, database_url: str) -> Iterator[dict]:
    env = live.production_env(e2e_dir, database_url, "memory")
    live.migrate(env)
    live.create_users(env, ["mem"], "mem-password-1")
    (e2e_dir / "tiny.onnx").write_bytes(tiny_classifier())
    (e2e_dir / "pre.json").write_text(json.dumps(TINY_PREPROCESSING))
    register = ["register_model", "--name", "tiny", "--owner", "mem", "--alias", "production"]
    files = ["--file", str(e2e_dir / "tiny.onnx"), "--preprocessing", str(e2e_dir / "pre.json")]
    live.manage(env, *register, *files, quiet=True)
    web = live.start_web(env, e2e_dir / "memory-web.log")
    try:
        wait_for(lambda: web.ready() and _worker_pid(web.pid), 60, "the web server")
        auth = live.login(web.url, "mem", "mem-password-1").headers["Authorization"]
        yield {"url": web.url, "port": web.port, "pid": _worker_pid(web.pid), "auth": auth}
    finally:
        live.stop(web)


def _worker_pid(master: int) -> int | None:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(children[0]) if children else None


def peak_rss(pid: int) -> int:
    """The process's high-water mark of resident memory, in bytes (Linux: VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def zeros(size: int) -> Iterator[bytes]:
    chunk = b"\0" * MB
    sent = 0
    while sent < size:
        yield chunk[: min(MB, size - sent)]
        sent += MB


def multipart(fields: dict[str, str], file_field: str, file_size: int) -> tuple[int, Iterator[bytes]]:
    """A multipart body with one file of `file_size` zero bytes: its length, and its bytes."""
    head = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    )
    head += (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{file_field}"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield head.encode()
        yield from zeros(file_size)
        yield tail

    return len(head.encode()) + file_size + len(tail), body()


def send(server: dict, path: str, content_type: str, length: int, body: Iterator[bytes]) -> int | None:
    """POST a streamed body over a raw socket, reading the answer while sending (the server
    answers early and stops reading); the answer's status, or None if none came."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=60) as sock:

        def read() -> None:
            try:
                while chunk := sock.recv(65536):
                    received.extend(chunk)
            except OSError:
                pass

        reader = threading.Thread(target=read)
        reader.start()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {server['auth']}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
        )
        try:
            sock.sendall(head.encode())
            for chunk in body:
                if received:  # answered: the rest would not be read
                    break
                sock.sendall(chunk)
        except OSError:  # the server closed the connection after answering
            pass
        reader.join(timeout=60)
    status_line = bytes(received).split(b"\r\n", 1)[0].split()
    return int(status_line[1]) if len(status_line) > 1 else None


def cases() -> list[tuple[str, str, str, int, object]]:
    """(door, path, content type, length, body) for a body over each door's limit."""
    multi = f"multipart/form-data; boundary={BOUNDARY}"
    predict_len, predict_body = multipart({}, "image", 300 * MB)
    jobs_len, jobs_body = multipart({"model": "tiny"}, "inputs", 300 * MB)
    labels_len, labels_body = multipart({}, "labels", 100 * MB)
    predict = "/api/v1/models/tiny/predict"
    return [
        ("predict raw (1 GiB)", predict, "image/jpeg", 1024 * MB, zeros(1024 * MB)),
        ("predict multipart (one 300 MB file)", predict, multi, predict_len, predict_body),
        ("predict JSON (100 MB)", predict, "application/json", 100 * MB, zeros(100 * MB)),
        ("jobs multipart (one 300 MB input)", "/api/v1/jobs/", multi, jobs_len, jobs_body),
        ("jobs body (3 GiB)", "/api/v1/jobs/", multi, 3072 * MB, zeros(3072 * MB)),
        ("jobs JSON (100 MB)", "/api/v1/jobs/", "application/json", 100 * MB, zeros(100 * MB)),
        ("versions (600 MB)", "/api/v1/models/tiny/versions/", multi, 600 * MB, zeros(600 * MB)),
        ("versions labels file (100 MB)", "/api/v1/models/tiny/versions/", multi, labels_len, labels_body),
        (
            "evaluation sets (600 MB)",
            "/api/v1/models/tiny/evaluation-sets/",
            multi,
            600 * MB,
            zeros(600 * MB),
        ),
        ("v2 infer (100 MB)", "/v2/models/tiny/infer", "application/octet-stream", 100 * MB, zeros(100 * MB)),
    ]


def test_the_web_process_stays_within_its_bound_while_every_door_refuses_oversized_bodies(server):
    # Warm up each door with a small request, so the bound is measured from a used process.
    headers = {"Authorization": server["auth"]}
    for path in ("/api/v1/models/tiny/predict", "/api/v1/jobs/", "/v2/models/tiny/infer"):
        json_headers = {**headers, "Content-Type": "application/json"}
        requests.post(server["url"] + path, data=b"{}", headers=json_headers, timeout=30)
    idle = peak_rss(server["pid"])
    answers = {}
    for door, path, content_type, length, body in cases():
        answers[door] = send(server, path, content_type, length, body)
        assert peak_rss(server["pid"]) - idle < BOUND, (door, peak_rss(server["pid"]) - idle)
    print(f"peak RSS: idle {idle / MB:.0f} MB, after {peak_rss(server['pid']) / MB:.0f} MB")
    assert answers == dict.fromkeys(answers, 413), answers
    assert _worker_pid_alive(server["pid"])


def _worker_pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()
