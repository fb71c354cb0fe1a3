import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from apps.core.middleware import RequestIdLogFilter
from tests import live, onnx_models
from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def model_store_root(tmp_path, settings):
    """Every test gets its own empty model store."""
    root = tmp_path / "model_store"
    root.mkdir()
    settings.MODEL_STORE_ROOT = root
    return root


@pytest.fixture
def user(db):
    return UserFactory(username="alice")


@pytest.fixture
def other_user(db):
    return UserFactory(username="bob")


@pytest.fixture
def staff_user(db):
    return UserFactory(username="admin", is_staff=True, is_superuser=True)


@pytest.fixture
def client_for() -> Callable:
    """An API client logged in as `user` with a real JWT access token."""

    def make(user) -> APIClient:
        from rest_framework_simplejwt.tokens import AccessToken

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
        return client

    return make


@pytest.fixture
def key_client(user) -> Callable:
    """An API client authenticated with a fresh API key of `owner` (default: alice)."""
    from apps.accounts.services.api_keys import api_key_create

    def make(scopes=("models:read", "models:write", "predict", "jobs"), owner=None, **fields) -> APIClient:
        created = api_key_create(owner=owner or user, name="test", scopes=list(scopes), **fields)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {created.key}")
        client.api_key = created.api_key
        client.key = created.key
        return client

    return make


@pytest.fixture(autouse=True)
def isolated_cache(settings):
    """Each test gets its own cache namespace, so rate counters never leak between tests
    (in CI the cache is the shared Redis)."""
    import uuid

    caches = {alias: dict(config) for alias, config in settings.CACHES.items()}
    caches["default"]["KEY_PREFIX"] = f"test-{uuid.uuid4().hex}"
    settings.CACHES = caches


@pytest.fixture
def api(user, client_for) -> APIClient:
    return client_for(user)


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


def onnx_upload(content: bytes | None = None, name: str = "model.onnx") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content if content is not None else onnx_models.tiny_classifier())


def stored_files(root) -> list:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture(autouse=True)
def frozen_rate_clock(monkeypatch):
    """Rate windows are fixed: a test that crossed a window boundary would see its
    counters reset. Pin the clock the rate limiter reads to the middle of a window."""
    monkeypatch.setattr("apps.accounts.ratelimit._now", lambda: 1_800_000_030.0)


class _Collect(logging.Handler):
    """As the console handler is set up: the request-id filter, then the record."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.addFilter(RequestIdLogFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def log_records():
    """Log records as the handlers see them, after the request-id filter."""
    handler, root = _Collect(), logging.getLogger()
    root.addHandler(handler)
    yield handler.records
    root.removeHandler(handler)


@pytest.fixture(scope="module")
def e2e_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of one live suite's own: its SQLite file, model store, broker, static files and logs."""
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def database_url(e2e_dir: Path) -> Iterator[str]:
    """A fresh database for one live suite's processes (PostgreSQL's in CI), dropped afterwards."""
    with live.database(e2e_dir) as url:
        yield url
