import base64
from collections.abc import Callable

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from tests import onnx_models
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


def basic_auth(username: str, password: str = "secret-password") -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return f"Basic {token}"


@pytest.fixture
def client_for() -> Callable:
    def make(user) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=basic_auth(user.username))
        return client

    return make


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
