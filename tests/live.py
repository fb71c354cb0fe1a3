"""Real processes for the live suites (tests/e2e, tests/browser, tests/fuzz): the services they
need, a database of their own, the production settings' environment, the `manage.py` steps
before a server starts, and gunicorn and Celery processes started with their logs, waited
for and stopped.

The module-scoped fixtures built on these, `e2e_dir` and `database_url`, are in
tests/conftest.py; each suite's own `stack` fixture says only what differs.
"""

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo" / "efficientnet_lite0"
BIN = Path(sys.executable).parent  # the venv's gunicorn, celery and mlp

ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
HAS_REDIS = bool(os.environ.get("REDIS_URL"))


def requires(
    *, postgres: bool = False, redis: bool = False, redis_server: bool = False
) -> list[pytest.MarkDecorator]:
    """The skip marks of a suite that needs CI's services: PostgreSQL (DATABASE_URL), Redis
    (REDIS_URL), or a redis-server binary to run a Redis of the suite's own. Without them the
    rest of the live suites run on the embedded default (SQLite, the filesystem broker)."""
    marks = []
    services = {"PostgreSQL (DATABASE_URL)": (postgres, ON_POSTGRES), "Redis (REDIS_URL)": (redis, HAS_REDIS)}
    wanted = [name for name, (needed, _) in services.items() if needed]
    if wanted:
        missing = any(needed and not there for needed, there in services.values())
        marks.append(pytest.mark.skipif(missing, reason=f"needs {' and '.join(wanted)}, as in CI"))
    if redis_server:
        marks.append(pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"))
    return marks


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.25) -> object:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    """Whether `url` answers 200 now."""
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:  # not listening yet, or too busy starting up to answer
        return False


class RedisServer:
    """A redis-server of a suite's own on a free port, which the suite can kill and start again.

    Durable: every write fsynced to an append-only file in `directory` (what the README asks
    of the audit stream mode), so a restart finds what was there. Otherwise nothing persists,
    and a kill loses whatever was queued, as a crash would.
    """

    def __init__(self, directory: Path, durable: bool = False) -> None:
        self.port, self.directory, self.durable = free_port(), directory, durable
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.durable:
            command += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)]
        else:
            command += ["--appendonly", "no"]
        self.process = subprocess.Popen(
            command, cwd=self.directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
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
        """SIGKILL, as a crash: what was not written to the append-only file is gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@contextlib.contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A new database on DATABASE_URL's PostgreSQL server, dropped afterwards (connections and all)."""
    import psycopg

    base = urlsplit(os.environ["DATABASE_URL"])
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin_url = urlunsplit(base._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(base._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def database(folder: Path, prefix: str = "mlplatform_e2e") -> Iterator[str]:
    """A fresh PostgreSQL database when DATABASE_URL names one; otherwise an SQLite file in `folder`."""
    if not ON_POSTGRES:
        yield f"sqlite:///{folder / 'e2e.sqlite3'}"
        return
    with postgres_database(prefix) as url:
        yield url


def production_env(
    workdir: Path, database_url: str, cache_prefix: str | None, **overrides: str
) -> dict[str, str]:
    """The environment of a process on the production settings, with its files under `workdir`.

    `cache_prefix` starts a cache key prefix of the stack's own (None: the settings' default),
    so that stacks sharing one Redis never read each other's counters. Without Redis, Celery
    takes the filesystem broker (production refuses to start with no broker at all).
    """
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mlplatform.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "False",  # no TLS proxy in front of these servers
        "DATABASE_URL": database_url,
        "MODEL_STORE_ROOT": str(workdir / "store"),
        "BROKER_DIR": str(workdir / "broker"),
        "STATIC_ROOT": str(workdir / "static"),
        "PYTHONUNBUFFERED": "1",
    }
    if cache_prefix is not None:
        env["CACHE_KEY_PREFIX"] = f"{cache_prefix}-{uuid.uuid4().hex}"
    env.update(overrides)
    if not env.get("REDIS_URL") and "CELERY_BROKER_URL" not in overrides:
        env["CELERY_BROKER_URL"] = "filesystem://"
    return env


def manage(env: dict[str, str], *args: str, quiet: bool = False) -> str:
    """Run `manage.py <args>` in `env`; fail unless it succeeds. Quiet: its output captured and returned."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=quiet,
        text=True,
    )
    return done.stdout or ""


def migrate(env: dict[str, str], quiet: bool = False) -> None:
    manage(env, "migrate", "--noinput", "-v0", quiet=quiet)


def collectstatic(env: dict[str, str], quiet: bool = False) -> None:
    manage(env, "collectstatic", "--noinput", "-v0", quiet=quiet)


def create_users(
    env: dict[str, str], usernames: Iterable[str], password: str, superuser: bool = False, quiet: bool = False
) -> None:
    """Users who log in with `password` (superusers, if asked), in one `manage.py shell`."""
    make = "create_superuser" if superuser else "create_user"
    code = (
        "from apps.accounts.models import User\n"
        f"for name in {list(usernames)!r}:\n"
        f"    User.objects.{make}(name, password={password!r})"
    )
    manage(env, "shell", "-c", code, quiet=quiet)


@dataclass
class Live:
    """A process started by a live suite, writing its output to `log_path`."""

    process: subprocess.Popen
    log_path: Path
    log: IO[str]
    own_group: bool = False  # started in a session of its own: signals go to it and its children
    url: str = ""  # a web server's, e.g. http://127.0.0.1:8123
    port: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, number: int) -> None:
        if self.own_group:
            os.killpg(self.process.pid, number)
        else:
            self.process.send_signal(number)

    def ready(self, path: str = "/readyz") -> bool:
        return answers(f"{self.url}{path}")

    def wait_ready(self, what: str = "", path: str = "/readyz", timeout: float = 60) -> None:
        wait_for(lambda: self.ready(path), timeout, what or f"{self.url} to be ready")


def spawn(
    command: list[str], env: dict[str, str], log_path: Path, append: bool = False, own_group: bool = False
) -> Live:
    """Start `command` from the repository's root, its stdout and stderr both to `log_path`."""
    log = log_path.open("a" if append else "w")
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=own_group
    )
    return Live(process, log_path, log, own_group)


def start_web(
    env: dict[str, str],
    log_path: Path,
    workers: int = 1,
    threads: int | None = None,
    timeout: int | None = None,
    config: bool = False,
    **options: bool,
) -> Live:
    """gunicorn on a free port of 127.0.0.1; `config`: with the repository's gunicorn.conf.py,
    as deployed. Its `url` is set; wait for it with `wait_ready()`."""
    port = free_port()
    command = [str(BIN / "gunicorn"), "mlplatform.wsgi"]
    if config:
        command += ["-c", str(ROOT / "gunicorn.conf.py")]
    command += ["--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    if threads is not None:
        command += ["--threads", str(threads)]
    if timeout is not None:
        command += ["--timeout", str(timeout)]
    web = spawn(command, env, log_path, **options)
    web.url, web.port = f"http://127.0.0.1:{port}", port
    return web


def start_worker(
    env: dict[str, str],
    log_path: Path,
    queues: str,
    hostname: str | None = None,
    loglevel: str | None = "INFO",
    **options: bool,
) -> Live:
    """One Celery worker process (concurrency 1) consuming `queues` (comma-separated)."""
    command = [str(BIN / "celery"), "-A", "mlplatform", "worker", "--queues", queues, "--concurrency", "1"]
    if hostname is not None:
        command += ["--hostname", hostname]
    if loglevel is not None:
        command += ["--loglevel", loglevel]
    return spawn(command, env, log_path, **options)


def stop(*processes: Live, timeout: float = 20) -> None:
    """Stop them all, SIGTERM to each first, then SIGKILL to any that outlives `timeout`; close their logs."""
    for live in processes:
        if live.process.poll() is None:
            live.signal(signal.SIGTERM)
    for live in processes:
        try:
            live.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            live.signal(signal.SIGKILL)
            live.process.wait()
    for live in processes:
        live.log.close()


def login(
    url: str, username: str = "e2e", password: str = "e2e-password", timeout: float = 10
) -> requests.Session:
    """A session carrying a JWT access token obtained over HTTP."""
    response = requests.post(
        f"{url}/api/v1/auth/token/", json={"username": username, "password": password}, timeout=timeout
    )
    assert response.status_code == 200, response.text
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {response.json()['access']}"
    return session
