"""`make run` (scripts/run-local.sh) stops within seconds of Ctrl-C and frees its ports, so an
immediate second `make run` can bind them: the real script, its real gunicorn, Celery worker
(with beat) and gRPC server, on the embedded default in a scratch folder and on free ports."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.live import ROOT, free_port, wait_for

pytestmark = pytest.mark.e2e


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def bindable(port: int) -> bool:
    """Whether a new server could listen on `port` now (as the next `make run` would)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn and grpc do
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def descendants(pid: int) -> set[int]:
    """Every process under `pid`, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def local_env(tmp_path: Path) -> dict[str, str]:
    """`make run`'s embedded default (SQLite, filesystem broker), kept in `tmp_path`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "CACHE_", "CELERY_"))}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        BROKER_DIR=str(tmp_path / "broker"),
        CELERY_BEAT_SCHEDULE_FILENAME=str(tmp_path / "celerybeat-schedule"),
        MODEL_STORE_ROOT=str(tmp_path / "model_store"),
        MLP_PORT=str(free_port()),
        GRPC_PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the test settings pytest set: make run has none
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    return env


def test_ctrl_c_stops_everything_and_frees_the_ports_at_once(local_env, tmp_path, record_property):
    web, grpc = int(local_env["MLP_PORT"]), int(local_env["GRPC_PORT"])
    log = (tmp_path / "run-local.log").open("wb")
    # A session of its own, as a terminal gives `make run`'s process group.
    script = subprocess.Popen(
        ["bash", "scripts/run-local.sh"],
        cwd=ROOT,
        env=local_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: accepts(web) and accepts(grpc), 180, "gunicorn and the gRPC server to listen")
        wait_for(lambda: b"ready." in (tmp_path / "run-local.log").read_bytes(), 120, "the Celery worker")
        processes = descendants(script.pid)
        assert len(processes) >= 5  # gunicorn master and worker, celery and its pool, grpc

        started = time.monotonic()
        os.killpg(script.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
        wait_for(lambda: bindable(web) and bindable(grpc), 30, "the ports to be free", interval=0.02)
        freed = time.monotonic() - started
        assert script.wait(timeout=30) is not None
        wait_for(lambda: not any(alive(pid) for pid in processes), 30, "every process to end", 0.02)
        ended = time.monotonic() - started
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
        for pid in descendants(script.pid):
            os.kill(pid, signal.SIGKILL)
        log.close()
    # Measured, for the record (docs: make run stops within 2 s); the bound is the timeouts above.
    record_property("ports_free_seconds", round(freed, 2))
    record_property("all_ended_seconds", round(ended, 2))
    print(f"ports free after {freed:.2f} s, every process ended after {ended:.2f} s")
