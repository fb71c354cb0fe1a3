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

from tests import live
from tests.live import ROOT, free_port, wait_for

PHOTO = (ROOT / "demo" / "images" / "coffee.jpg").read_bytes()

pytestmark = [pytest.mark.e2e, *live.requires(postgres=True, redis_server=True)]


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
    workdir = tmp_path_factory.mktemp("audit-stream")
    redis_server = live.RedisServer(workdir, durable=True)
    redis_server.start()
    with live.postgres_database("mlplatform_audit_e2e") as database_url:
        parts = urlsplit(database_url)
        relay = Relay((parts.hostname, parts.port or 5432))
        relay.restore()
        env = live.production_env(
            workdir,
            database_url,
            "audit-e2e",
            REDIS_URL=redis_server.url,
            AUDIT_MODE="stream",
            AUDIT_WRITER_CLAIM_SECONDS="1",
            THROTTLE_RATE_PREDICT="100000/min",
            MONTHLY_PREDICTION_QUOTA="1000000",
        )
        live.migrate(env, quiet=True)
        live.create_users(env, ["e2e"], "pw", superuser=True, quiet=True)
        live.manage(env, *_register_tiny(workdir), quiet=True)
        key = live.manage(
            env, "create_api_key", "e2e", "--name", "e2e", "--scopes", "predict", quiet=True
        ).strip()
        processes: list[live.Live] = []

        def writer(label: str = "writer", **extra: str) -> subprocess.Popen:
            relayed = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{relay.port}"))
            command = [sys.executable, str(ROOT / "manage.py"), "auditwriter", "--batch", "20"]
            env_writer = {**env, "DATABASE_URL": relayed, **extra}
            processes.append(live.spawn(command, env_writer, workdir / f"{label}.log", append=True))
            return processes[-1].process

        web = live.start_web(env, workdir / "web.log", workers=2, threads=1, config=True, append=True)
        processes.append(web)
        stack = {
            "url": web.url,
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
            web.wait_ready("the web server")
            yield stack
        finally:
            live.stop(*processes)
            relay.cut()
            redis_server.kill()


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
