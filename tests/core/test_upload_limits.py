"""Every size limit is enforced while the body is read, never after (apps/core/uploads.py):
a body over its door's limit is refused from its Content-Length before a byte is read, and a
multipart file over its field's limit as soon as that many bytes have arrived."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from apps.core.uploads import CappedUploadHandler, UploadLimits
from apps.jobs.models import BatchJob
from apps.registry.models import ModelVersion
from tests.factories import MLModelFactory, ModelVersionFactory
from tests.inference.conftest import photo

pytestmark = pytest.mark.django_db


class CountingStream(io.BytesIO):
    """A request body that counts what the server read of it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size: int = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


@pytest.fixture
def model(user):
    model = MLModelFactory(name="m", owner=user)
    ModelVersionFactory(model=model, status=ModelVersion.Status.READY)
    return model


def assert_413(response, code: str = "input_too_large") -> dict:
    assert response.status_code == 413, response.content
    error = response.json()["error"]
    assert error["code"] == code
    return error


def test_a_raw_image_body_over_the_per_input_limit_is_413_not_a_job(key_client, model, settings):
    settings.JOB_MAX_ITEM_BYTES = 1000
    settings.SYNC_MAX_BODY_BYTES = 500  # over it, a body would become a job
    number = model.versions.get().number
    response = key_client().post(
        f"/api/v1/models/m/predict?version={number}", b"\xff\xd8" + b"x" * 2000, content_type="image/jpeg"
    )
    assert assert_413(response)["details"]["limit_bytes"] == 1000
    assert not BatchJob.objects.exists()


def test_a_raw_image_body_under_the_limit_but_over_the_sync_one_still_becomes_a_job(
    key_client, model, settings, enqueued_jobs
):
    settings.SYNC_MAX_BODY_BYTES = 500
    number = model.versions.get().number
    response = key_client().post(
        f"/api/v1/models/m/predict?version={number}", photo("coffee"), content_type="image/jpeg"
    )
    assert response.status_code == 202, response.content


@pytest.fixture
def enqueued_jobs(monkeypatch):
    from apps.core import tasks

    monkeypatch.setattr(tasks, "enqueue", lambda *args, **kwargs: None)


def test_a_multipart_job_file_over_the_per_input_limit_is_refused_while_it_arrives(api, model, settings):
    settings.JOB_MAX_ITEM_BYTES = 64 * 1024
    body = encode_multipart(BOUNDARY, {"model": "m", "inputs": SimpleUploadedFile("a.jpg", b"x" * 4_000_000)})
    stream = CountingStream(body)
    response = api.generic(
        "POST", "/api/v1/jobs/", b"", content_type=MULTIPART_CONTENT, **_stream_meta(stream)
    )
    assert assert_413(response)["details"]["limit_bytes"] == 64 * 1024
    assert stream.consumed < len(body) / 2  # stopped long before the end of the body
    assert not BatchJob.objects.exists()


def test_an_archive_has_the_job_limit_not_the_per_input_one(api, model, settings):
    settings.JOB_MAX_ITEM_BYTES = 1024
    limits = UploadLimits(
        body="JOB_MAX_BYTES", file="JOB_MAX_ITEM_BYTES", fields={"archive": "JOB_MAX_BYTES"}
    )
    assert limits.file_bytes("archive") == settings.JOB_MAX_BYTES
    assert limits.file_bytes("inputs") == 1024


def test_the_capped_handler_counts_each_file_anew():
    handler = CappedUploadHandler(None, UploadLimits(file="JOB_MAX_ITEM_BYTES"))
    for name in ("a", "b"):
        handler.new_file("inputs", name, "image/jpeg", 10)
        handler.receive_data_chunk(b"x" * 10, 0)
    assert handler.size == 10


def test_a_body_over_a_doors_declared_limit_is_413_before_reading(api, model, settings):
    settings.EVALUATION_SET_MAX_BYTES = 10_000
    body = encode_multipart(BOUNDARY, {"name": "s", "file": SimpleUploadedFile("s.jsonl", b"x" * 2_000_000)})
    stream = CountingStream(body)
    response = api.generic(
        "POST",
        "/api/v1/models/m/evaluation-sets/",
        b"",
        content_type=MULTIPART_CONTENT,
        **_stream_meta(stream),
    )
    assert_413(response, "payload_too_large")
    assert stream.consumed == 0


def test_an_evaluation_set_file_over_its_limit_is_refused_while_it_arrives(api, model, settings):
    settings.EVALUATION_SET_MAX_BYTES = 100_000
    body = encode_multipart(BOUNDARY, {"name": "s", "file": SimpleUploadedFile("s.jsonl", b"x" * 900_000)})
    stream = CountingStream(body)
    response = api.generic(
        "POST",
        "/api/v1/models/m/evaluation-sets/",
        b"",
        content_type=MULTIPART_CONTENT,
        **_stream_meta(stream),
    )
    assert_413(response)
    assert stream.consumed < len(body) / 2


def test_a_json_body_over_the_json_limit_is_413_on_every_door(api, model, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = b'{"model": "m", "images": ["' + b"A" * 5000 + b'"]}'
    stream = CountingStream(body)
    response = api.generic(
        "POST", "/api/v1/jobs/", b"", content_type="application/json", **_stream_meta(stream)
    )
    assert_413(response, "payload_too_large")
    assert stream.consumed == 0


def test_a_labels_file_has_the_default_small_limit(api, model, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    from tests.onnx_models import tiny_classifier

    response = api.post(
        "/api/v1/models/m/versions/",
        {
            "file": SimpleUploadedFile("m.onnx", tiny_classifier()),
            "labels": SimpleUploadedFile("labels.txt", b"a\n" * 5000),
        },
        format="multipart",
    )
    assert_413(response)


def _stream_meta(stream: CountingStream) -> dict:
    """Test-client META that makes `stream` the request body, with its true length."""
    return {"wsgi.input": stream, "CONTENT_LENGTH": str(len(stream.getvalue()))}
