"""Readiness end to end: /readyz answers 503 while PostgreSQL is stopped, and recovers
without a restart once it is back. The test runs a PostgreSQL server of its own (initdb
in a temporary folder), so stopping it disturbs nothing else on the machine."""

import contextlib
import glob
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests import live
from tests.live import free_port, wait_for

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not PG_BIN, reason="needs PostgreSQL's server binaries (initdb, pg_ctl)"),
    pytest.mark.skipif(
        shutil.which("runuser") is None or os.geteuid() != 0, reason="initdb runs as postgres"
    ),
    *live.requires(redis=True),
]


class PostgresServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        bin_dir = PG_BIN[-1]
        self.pg_ctl, self.initdb = f"{bin_dir}/pg_ctl", f"{bin_dir}/initdb"

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True)

    def init(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.directory, "postgres", "postgres")
        self._as_postgres(self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            self.pg_ctl,
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "pg.log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._as_postgres(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    workdir = tmp_path_factory.mktemp("readiness")
    postgres = PostgresServer(Path("/tmp") / f"mlp-pg-{uuid.uuid4().hex[:8]}")
    postgres.init()
    postgres.start()
    env = live.production_env(workdir, postgres.url, "readiness")
    live.migrate(env)
    web = live.start_web(env, workdir / "web.log", config=True)
    try:
        web.wait_ready("the server to be ready")
        yield {"url": web.url, "postgres": postgres}
    finally:
        live.stop(web)
        with contextlib.suppress(subprocess.CalledProcessError):
            postgres.stop()
        shutil.rmtree(postgres.directory, ignore_errors=True)


def _status(url: str) -> int:
    try:
        return requests.get(url, timeout=10).status_code
    except requests.RequestException:
        return 0


def test_readyz_is_503_while_postgresql_is_stopped_and_recovers_without_a_restart(server: dict) -> None:
    url, postgres = server["url"], server["postgres"]
    ready = requests.get(f"{url}/readyz", timeout=10).json()
    assert ready["status"] == "ready"
    assert set(ready["checks"]) == {"database", "broker", "model_store", "models"}

    postgres.stop()
    try:
        response = requests.get(f"{url}/readyz", timeout=20)
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not_ready"
        assert body["checks"]["database"]["ok"] is False
        assert body["checks"]["database"]["error"]
        assert body["checks"]["broker"]["ok"] is True
        # Liveness touches no dependency: the process is fine, only not ready.
        assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
    finally:
        postgres.start()
    wait_for(lambda: _status(f"{url}/readyz") == 200, 30, "readiness to recover")
    assert requests.get(f"{url}/readyz", timeout=10).json()["checks"]["database"] == {"ok": True}
