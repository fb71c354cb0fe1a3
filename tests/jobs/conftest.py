import io
import json
import tarfile
import zipfile

import pytest

from tests.inference.conftest import (  # noqa: F401  (fixtures shared with the inference tests)
    demo_version,
    encode,
    fresh_session_cache,
    photo,
    tensor_version,
    tiny_version,
)


@pytest.fixture(autouse=True)
def job_settings(settings):
    settings.JOB_BATCH_SIZE = 4
    settings.JOB_PROGRESS_INTERVAL_SECONDS = 0
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def enqueued(monkeypatch) -> list[str]:
    """Jobs enqueued (by submission commits or the reconciler), recorded instead of run."""
    calls: list[str] = []
    monkeypatch.setattr("apps.jobs.services.submitting.enqueue_job", lambda job_id: calls.append(str(job_id)))
    return calls


def make_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def make_tar(entries: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def as_json(response) -> dict:
    return json.loads(response.content)
