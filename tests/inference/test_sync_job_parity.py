"""The same input answers the same whichever door it came in by: a synchronous predict and a
batch job run one pipeline (apps/inference/pipeline.py), so their outputs, error codes and
audit rows match."""

import base64

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from apps.inference.models import Prediction
from apps.jobs.models import JobItem
from apps.jobs.services import job_run
from tests import images, onnx_models
from tests.factories import MLModelFactory
from tests.inference.conftest import TINY_PREPROCESSING, encode, photo, ready_version

JOBS = "/api/v1/jobs/"


def predict(api, model: str, files: list[tuple[str, bytes]]):
    uploads = [SimpleUploadedFile(name, data, content_type="image/jpeg") for name, data in files]
    return api.post(f"/api/v1/models/{model}/predict", {"image": uploads}, format="multipart")


def run_job(api, model: str, body: dict) -> list[JobItem]:
    response = api.post(JOBS, {"model": model, **body}, format="json")
    assert response.status_code == 202, response.content
    assert job_run(job_id=response.json()["id"]) == "succeeded"
    return list(JobItem.objects.filter(job_id=response.json()["id"]).order_by("index"))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def audit_outputs(source: str) -> list[dict]:
    return [row.output for row in Prediction.objects.filter(source=source).order_by("id")]


def test_demo_photos_get_identical_answers_and_audit_rows(api, demo_version):
    photos = [photo(name) for name in ("coffee", "chelsea")]
    sync = predict(api, "effnet", [(f"{i}.jpg", data) for i, data in enumerate(photos)])
    assert sync.status_code == 200
    items = run_job(api, "effnet", {"images": [b64(data) for data in photos]})
    assert [item.output for item in items] == sync.json()["predictions"]
    assert audit_outputs("job") == audit_outputs("sync")
    sync_rows = Prediction.objects.filter(source="sync").order_by("id")
    job_rows = Prediction.objects.filter(source="job").order_by("id")
    assert [r.input_sha256 for r in sync_rows] == [r.input_sha256 for r in job_rows]
    for sync_row, job_row in zip(sync_rows, job_rows, strict=True):
        for key in ("format", "width", "height", "kind"):
            assert sync_row.input_meta[key] == job_row.input_meta[key]


def test_a_tensor_task_model_answers_one_output_per_image_in_both(api, user):
    """It was a 500 with no audit row synchronously, one output per image as a job."""
    model = MLModelFactory(name="embedder", owner=user, task="tensor")
    ready_version(model, onnx_models.tiny_classifier(), preprocessing=TINY_PREPROCESSING)
    pictures = [encode(Image.new("RGB", (8, 8), colour), "PNG") for colour in ("red", "blue")]
    sync = predict(api, "embedder", [(f"{i}.png", data) for i, data in enumerate(pictures)])
    assert sync.status_code == 200
    predictions = sync.json()["predictions"]
    assert len(predictions) == 2 and predictions[0] != predictions[1]
    assert all(p["outputs"]["logits"]["shape"][0] == 1 for p in predictions)
    items = run_job(api, "embedder", {"images": [b64(data) for data in pictures]})
    assert [item.output for item in items] == predictions
    assert audit_outputs("job") == audit_outputs("sync")


def test_named_tensors_get_identical_answers(api, tensor_version):
    inputs = {"x": [[1.0, 2.0, 3.0, 4.0]], "n": [41]}
    sync = api.post("/api/v1/models/doubler/predict", {"inputs": inputs}, format="json")
    assert sync.status_code == 200, sync.content
    items = run_job(api, "doubler", {"inputs": [inputs]})
    assert [item.output for item in items] == sync.json()["predictions"]
    sync_row, job_row = Prediction.objects.order_by("id")
    assert (sync_row.output, sync_row.input_sha256) == (job_row.output, job_row.input_sha256)
    assert sync_row.input_meta["tensors"] == job_row.input_meta["tensors"]


def test_a_preprocessing_that_does_not_fit_the_model_is_the_same_error(api, tiny_version):
    tiny_version.preprocessing = {**tiny_version.preprocessing, "resize": None, "crop": None}
    tiny_version.save()
    picture = encode(Image.new("RGB", (16, 16)), "PNG")
    sync = predict(api, "tiny", [("a.png", picture)])
    assert sync.status_code == 422
    (item,) = run_job(api, "tiny", {"images": [b64(picture)]})
    assert item.error_code == sync.json()["error"]["code"] == "preprocessing_mismatch"


@pytest.mark.parametrize("name", sorted(images.ODD_IMAGES))
def test_odd_and_broken_images_get_the_same_answer(api, demo_version, name):
    """Large, progressive, CMYK, rotated, truncated, 16-bit and strip-shaped images: the
    same top-k, or the same error code, from a synchronous call and from a job."""
    data = images.ODD_IMAGES[name]()
    sync = predict(api, "effnet", [(name, data)])
    (item,) = run_job(api, "effnet", {"images": [b64(data)]})
    if sync.status_code == 200:
        assert item.status == "succeeded"
        assert [item.output] == sync.json()["predictions"]
    else:
        assert item.status == "failed"
        assert item.error_code == sync.json()["error"]["code"]
    sync_row, job_row = Prediction.objects.order_by("id")
    assert (sync_row.status, sync_row.error_code, sync_row.output) == (
        job_row.status,
        job_row.error_code,
        job_row.output,
    )
    for key in ("format", "width", "height", "decoded_width", "decoded_height"):
        assert sync_row.input_meta.get(key) == job_row.input_meta.get(key)
