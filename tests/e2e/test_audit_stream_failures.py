"""AUDIT_MODE=stream's failure modes with real processes, counting rows (ADR 0030, README
"Audit modes"): Redis stopped while rows wait in the stream, PostgreSQL unreachable while
the writer runs, a web worker killed with SIGKILL under load, a writer killed with SIGKILL
in the middle of a batch.

The test runs its own redis-server (append-only file, fsync always: the configuration the
README asks of the stream mode), so it can kill and restart it, and reaches PostgreSQL for
the writer through a TCP relay of its own, so it can cut the writer off without stopping
the shared server. Needs PostgreSQL (DATABASE_URL) and redis-server, as in CI.
"""

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from tests.e2e.test_stack import BIN, ROOT, free_port, wait_for

PHOTO = (ROOT / "demo" / "images" / "coffee.jpg").read_bytes()

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
        reason="needs PostgreSQL (DATABASE_URL), as in CI",
    ),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


class Redis:
    """A redis-server of the test's own, persisting every write (appendfsync always)."""

    def __init__(self, directory: Path) -> None:
        self.port, self.directory, self.process = free_port(), directory, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.answers, 20, "redis-server to start")

    def answers(self) -> bool:
        import redis

        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_connect_timeout=0.5)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


class Relay:
    """A TCP relay to PostgreSQL: cut() drops every connection and refuses new ones, as a
    database that went away would; restore() listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, free_port()
        self.listener: socket.socket | None = None
        self.sockets: list[socket.socket] = []

    def restore(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def cut(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.sockets = []


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy one direction; when either side closes, close both, as a direct connection would
    (a killed client's backend must see its connection go and roll back)."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    import psycopg

    workdir = tmp_path_factory.mktemp("audit-stream")
    redis_server = Redis(workdir)
    redis_server.start()
    base = os.environ["DATABASE_URL"]
    name = f"mlplatform_audit_e2e_{uuid.uuid4().hex[:10]}"
    admin = urlunsplit(urlsplit(base)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = urlunsplit(urlsplit(base)._replace(path=f"/{name}"))
    parts = urlsplit(database_url)
    relay = Relay((parts.hostname, parts.port or 5432))
    relay.restore()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mlplatform.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "False",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server.url,
        "MODEL_STORE_ROOT": str(workdir / "store"),
        "STATIC_ROOT": str(workdir / "static"),
        "CACHE_KEY_PREFIX": f"audit-e2e-{uuid.uuid4().hex[:8]}",
        "AUDIT_MODE": "stream",
        "AUDIT_WRITER_CLAIM_SECONDS": "1",
        "THROTTLE_RATE_PREDICT": "100000/min",
        "MONTHLY_PREDICTION_QUOTA": "1000000",
        "PYTHONUNBUFFERED": "1",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]

    def run(*args: str) -> str:
        done = subprocess.run([*manage, *args], env=env, cwd=ROOT, check=True, capture_output=True, text=True)
        return done.stdout

    run("migrate", "--noinput", "-v0")
    run(
        "shell", "-c", "from apps.accounts.models import User; User.objects.create_superuser('e2e', '', 'pw')"
    )
    run(*_register_tiny(workdir))
    key = run("create_api_key", "e2e", "--name", "e2e", "--scopes", "predict").strip()
    port = free_port()
    logs, processes = [], {}

    def spawn(label: str, command: list[str], **extra: str) -> subprocess.Popen:
        log = (workdir / f"{label}.log").open("a")
        logs.append(log)
        process = subprocess.Popen(
            command, env={**env, **extra}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        processes[label] = process
        return process

    def writer(label: str = "writer", **extra: str) -> subprocess.Popen:
        relayed = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{relay.port}"))
        return spawn(label, [*manage, "auditwriter", "--batch", "20"], DATABASE_URL=relayed, **extra)

    gunicorn = [str(BIN / "gunicorn"), "mlplatform.wsgi", "-c", str(ROOT / "gunicorn.conf.py")]
    web = spawn("web", [*gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "1"])
    url = f"http://127.0.0.1:{port}"
    stack = {
        "url": url,
        "key": key,
        "redis": redis_server,
        "relay": relay,
        "database_url": database_url,
        "writer": writer,
        "web": web,
        "workdir": workdir,
        "stream": f"{env['CACHE_KEY_PREFIX']}:audit",
    }
    try:
        wait_for(lambda: _answers(f"{url}/readyz"), 60, "the web server")
        yield stack
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()
        relay.cut()
        if redis_server.process.poll() is None:
            redis_server.kill()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _register_tiny(workdir: Path) -> list[str]:
    import json

    from tests.onnx_models import tiny_classifier

    (workdir / "tiny.onnx").write_bytes(tiny_classifier())
    config = json.loads((ROOT / "demo" / "efficientnet_lite0" / "preprocessing.json").read_text())
    (workdir / "tiny.json").write_text(json.dumps({**config, "resize": 8, "crop": 8}))
    return [
        "register_model",
        "--name",
        "tiny",
        "--file",
        str(workdir / "tiny.onnx"),
        "--preprocessing",
        str(workdir / "tiny.json"),
        "--alias",
        "production",
    ]


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def predict(stack: dict, request_id: str = "") -> str | None:
    """One prediction; its request id when answered 200, None when the connection broke."""
    headers = {"X-API-Key": stack["key"], "Content-Type": "image/jpeg"}
    if request_id:
        headers["X-Request-ID"] = request_id
    try:
        response = requests.post(
            f"{stack['url']}/api/v1/models/tiny/predict",
            data=PHOTO,
            headers=headers,
            timeout=30,
        )
    except requests.ConnectionError:
        return None
    assert response.status_code == 200, response.text
    return response.headers["X-Request-ID"]


def query(stack: dict, sql: str, *params: object) -> list[tuple]:
    import psycopg

    with psycopg.connect(stack["database_url"], autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def stored(stack: dict) -> dict[str, int]:
    """Audit rows by request id (a count above 1 would be a duplicate)."""
    return dict(query(stack, "SELECT request_id, count(*) FROM inference_prediction GROUP BY request_id"))


def backlog(stack: dict) -> int:
    """Entries in the stream: waiting, or taken by a writer and not yet acknowledged."""
    return stack["redis"].client().xlen(stack["stream"])


def drained(stack: dict, ids: list[str]) -> None:
    """Wait until every one of `ids` has its row and the stream is empty."""
    wait_for(lambda: all(stored(stack).get(i) for i in ids) and backlog(stack) == 0, 60, "the rows to land")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=20)


def test_rows_waiting_while_redis_crashes_land_once_after_it_restarts(stack: dict) -> None:
    before = stored(stack)
    waiting = [predict(stack) for _ in range(5)]  # no writer yet: the rows wait in the stream
    assert backlog(stack) == 5
    stack["redis"].kill()
    meanwhile = [predict(stack) for _ in range(3)]  # Redis away: each row written durably at once
    rows = stored(stack)
    assert all(rows.get(i) == 1 for i in meanwhile)
    assert not any(i in rows for i in waiting)
    stack["redis"].start()  # the same port and append-only file: the waiting rows are still there
    assert backlog(stack) == 5
    writer = stack["writer"]()
    drained(stack, waiting)
    stop(writer)
    rows = stored(stack)
    assert len(rows) == len(before) + 8
    assert all(rows[i] == 1 for i in waiting + meanwhile)


def test_postgresql_away_while_the_writer_runs_delays_rows_and_loses_none(stack: dict) -> None:
    writer = stack["writer"]()
    first = [predict(stack) for _ in range(3)]
    drained(stack, first)
    stack["relay"].cut()  # the writer's database connection drops; the web's does not
    cut_off = [predict(stack) for _ in range(6)]
    log = stack["workdir"] / "writer.log"
    wait_for(lambda: "retrying" in log.read_text(), 30, "the writer to fail and retry")
    assert not any(i in stored(stack) for i in cut_off)
    assert backlog(stack) == 6
    stack["relay"].restore()
    drained(stack, cut_off)
    stop(writer)
    rows = stored(stack)
    assert all(rows[i] == 1 for i in first + cut_off)


def test_a_web_worker_killed_mid_request_loses_no_answered_row(stack: dict) -> None:
    writer = stack["writer"]()
    answered: list[str] = []
    broken: list[str] = []
    done = threading.Event()

    def load() -> None:
        while not done.is_set():
            request_id = uuid.uuid4().hex
            (answered if predict(stack, request_id) else broken).append(request_id)

    workers = _children(stack["web"].pid)
    with ThreadPoolExecutor(6) as pool:
        for _ in range(6):
            pool.submit(load)
        wait_for(lambda: len(answered) >= 20, 60, "requests to be answered")
        busy = wait_for(lambda: _running(workers), 30, "a worker serving a request", interval=0.005)
        os.kill(busy, signal.SIGKILL)
        wait_for(
            lambda: len(_children(stack["web"].pid) - workers) == 1, 60, "gunicorn to replace the worker"
        )
        count = len(answered)
        wait_for(lambda: len(answered) >= count + 20, 60, "requests answered by the new worker")
        done.set()
    drained(stack, answered)
    stop(writer)
    rows = stored(stack)
    assert all(rows[i] == 1 for i in answered)  # every answered prediction has exactly one row
    assert all(rows.get(i, 0) <= 1 for i in broken)  # the killed request's: one row or none


def test_a_writer_killed_mid_batch_leaves_no_duplicate_and_no_double_spend(stack: dict) -> None:
    import psycopg

    spent = query(stack, "SELECT coalesce(sum(used), 0) FROM accounts_quotausage")[0][0]
    ids = [predict(stack) for _ in range(50)]
    assert backlog(stack) == 50
    database = urlsplit(stack["database_url"]).path.lstrip("/")
    with psycopg.connect(stack["database_url"]) as holder:
        # The batch inserts its rows, then stops at the quota's table, inside its transaction.
        holder.execute("LOCK TABLE accounts_quotausage IN EXCLUSIVE MODE")
        killed = stack["writer"]("writer-killed")
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'"
        wait_for(lambda: query(stack, waiting, database)[0][0] == 1, 60, "the writer mid-batch")
        killed.kill()  # SIGKILL between its INSERT and its commit
        killed.wait()
        holder.rollback()
    assert not any(i in stored(stack) for i in ids)  # its transaction died with it
    writer = stack["writer"]()  # takes over the dead writer's entries after AUDIT_WRITER_CLAIM_SECONDS
    drained(stack, ids)
    stop(writer)
    rows = stored(stack)
    assert all(rows[i] == 1 for i in ids)
    assert query(stack, "SELECT sum(used) FROM accounts_quotausage")[0][0] == spent + 50


def _children(parent: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (OSError, ValueError):
            continue
        if entry.isdigit() and int(stat[stat.rindex(")") + 2 :].split()[1]) == parent:
            found.add(int(entry))
    return found


def _running(pids: set[int]) -> int | None:
    """A worker on the CPU right now: a sync worker serving a request."""
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] == "R":
            return pid
    return None
