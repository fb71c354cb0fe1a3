import json

import pytest

from apps.registry.models import ModelVersion
from tests import onnx_models
from tests.conftest import onnx_upload, stored_files
from tests.factories import MLModelFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/m/versions/"


@pytest.fixture
def model(user):
    return MLModelFactory(name="m", owner=user)


@pytest.fixture
def upload(api, django_capture_on_commit_callbacks):
    """POST a version; validation (eager Celery) runs when the upload commits."""

    def post(content: bytes | None = None, **fields):
        with django_capture_on_commit_callbacks(execute=True):
            return api.post(URL, {"file": onnx_upload(content), **fields}, format="multipart")

    return post


def test_it_uploads_and_validates_a_version(upload, model, model_store_root):
    response = upload(notes="first")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["version"] == 1
    assert body["status"] == "pending"
    assert len(body["sha256"]) == 64
    assert body["size_bytes"] == len(onnx_models.tiny_classifier())

    version = ModelVersion.objects.get(model=model, number=1)
    assert version.status == "ready", version.status_reason
    assert version.signature["inputs"] == [{"name": "input", "dtype": "float", "shape": [-1, 3, 8, 8]}]
    assert version.signature["outputs"] == [{"name": "logits", "dtype": "float", "shape": [-1, 3]}]
    assert version.signature["dynamic_batch"] is True
    metrics = version.metrics
    assert metrics["latency_ms"]["runs"] >= 20
    assert 0 < metrics["latency_ms"]["p50"] <= metrics["latency_ms"]["p95"]
    assert metrics["throughput_per_s"]["batch"] == 8
    assert metrics["throughput_per_s"]["items_per_s"] > 0
    assert metrics["load_ms"] > 0
    assert [p.name for p in stored_files(model_store_root)] == [f"{version.sha256[:12]}.onnx"]


def test_the_version_detail_shows_status_signature_and_metrics(upload, api, model):
    upload()
    body = api.get(f"{URL}1/").json()
    assert body["status"] == "ready"
    assert body["signature"]["inputs"][0]["name"] == "input"
    assert "p95" in body["metrics"]["latency_ms"]


def test_version_numbers_increase_per_model(upload, model):
    assert upload(onnx_models.tiny_classifier(seed=1)).json()["version"] == 1
    assert upload(onnx_models.tiny_classifier(seed=2)).json()["version"] == 2
    assert upload(onnx_models.tiny_classifier(seed=3)).json()["version"] == 3


def test_it_accepts_labels_as_text_and_preprocessing_as_json(upload, model):
    from django.core.files.uploadedfile import SimpleUploadedFile

    labels = SimpleUploadedFile("labels.txt", b"cat\ndog\n\nbird\n")
    config = {"resize": 10, "crop": 8, "mean": [127.0], "std": [128.0], "softmax": True}
    response = upload(labels=labels, preprocessing=json.dumps(config))
    assert response.status_code == 201, response.content
    version = ModelVersion.objects.get(model=model)
    assert version.labels == ["cat", "dog", "bird"]
    assert version.preprocessing["crop"] == 8
    assert version.preprocessing["layout"] == "NCHW"  # defaults filled in
    assert version.status == "ready"


def test_it_accepts_labels_as_a_json_list(upload, model):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = upload(labels=SimpleUploadedFile("labels.json", b'["a", "b", "c"]'))
    assert response.status_code == 201
    assert ModelVersion.objects.get(model=model).labels == ["a", "b", "c"]


def test_labels_that_do_not_match_the_classes_fail_validation(upload, model):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload(labels=SimpleUploadedFile("labels.txt", b"only-one\n"))
    version = ModelVersion.objects.get(model=model)
    assert version.status == "failed"
    assert "3 classes but 1 labels" in version.status_reason


def test_it_rejects_invalid_preprocessing(upload, model, model_store_root):
    response = upload(preprocessing=json.dumps({"layout": "CHWN", "bogus": 1}))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_preprocessing"
    assert not ModelVersion.objects.exists()
    assert stored_files(model_store_root) == []


def test_it_rejects_preprocessing_that_is_not_json(upload, model):
    response = upload(preprocessing="{not json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_preprocessing"


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(onnx_models.tiny_classifier()[:40], id="truncated"),
        pytest.param(bytes(range(256)) * 64, id="random-bytes"),
        pytest.param(onnx_models.zip_archive(), id="zip-renamed"),
        pytest.param(b"", id="empty"),
    ],
)
def test_it_rejects_bytes_that_are_not_onnx(upload, model, model_store_root, content):
    response = upload(content)
    assert response.status_code in (400, 422), response.content
    if content:
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "not_onnx"
    assert not ModelVersion.objects.exists()
    assert stored_files(model_store_root) == []


@pytest.mark.parametrize("location", ["/etc/passwd", "../x", "weights.bin"])
@pytest.mark.parametrize(
    "build",
    [
        onnx_models.with_external_data,
        onnx_models.external_data_in_function,
        onnx_models.external_data_in_sparse_constant,
    ],
    ids=["initializer", "local-function", "sparse-constant"],
)
def test_it_rejects_external_data(upload, model, model_store_root, location, build):
    response = upload(build(location))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "external_data_not_allowed"
    assert location in error["message"]
    assert stored_files(model_store_root) == []


def test_it_rejects_a_model_with_no_inputs(upload, model, model_store_root):
    response = upload(onnx_models.no_inputs())
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "no_inputs"
    assert stored_files(model_store_root) == []


def test_an_operator_onnx_runtime_lacks_fails_validation_with_a_reason(upload, model):
    response = upload(onnx_models.unsupported_operator())
    assert response.status_code == 201
    version = ModelVersion.objects.get(model=model)
    assert version.status == "failed"
    assert "Frobnicate" in version.status_reason
    assert version.signature == {}


def test_an_upload_without_a_file_is_400(api, model):
    response = api.post(URL, {"notes": "no file"}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()["error"]["details"]


def test_a_json_body_is_415(api, model):
    response = api.post(URL, {"file": "x"}, format="json")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_uploading_to_a_model_that_does_not_exist_is_404(upload, model_store_root):
    response = upload()
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert stored_files(model_store_root) == []


def test_uploading_to_another_users_private_model_is_404(api, other_user, django_capture_on_commit_callbacks):
    MLModelFactory(name="m", owner=other_user)
    response = api.post(URL, {"file": onnx_upload()}, format="multipart")
    assert response.status_code == 404


def test_the_same_file_twice_is_409_naming_the_version(upload, model, model_store_root):
    upload()
    response = upload()
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "duplicate_version"
    assert error["details"]["version"] == 1
    assert "version 1" in error["message"]
    assert ModelVersion.objects.count() == 1
    assert len(stored_files(model_store_root)) == 1


def test_an_upload_over_the_size_limit_is_413(upload, model, settings, model_store_root):
    settings.MODEL_UPLOAD_MAX_BYTES = 100
    response = upload()
    assert response.status_code == 413
    assert response.json()["error"]["details"]["limit_bytes"] == 100
    assert stored_files(model_store_root) == []


def test_a_request_body_over_the_limit_is_413_before_parsing(api, model, settings):
    settings.MODEL_UPLOAD_MAX_BYTES = 10
    response = api.generic("POST", URL, b"x" * 2_000_000, content_type="multipart/form-data; boundary=zzz")
    assert response.status_code == 413


def test_the_owner_patches_notes_labels_and_preprocessing(upload, api, model):
    upload()
    response = api.patch(
        f"{URL}1/",
        {"notes": "n", "labels": ["a", "b", "c"], "preprocessing": {"crop": 8, "resize": 8}},
        format="json",
    )
    assert response.status_code == 200, response.content
    version = ModelVersion.objects.get(model=model)
    assert (version.notes, version.labels, version.preprocessing["crop"]) == ("n", ["a", "b", "c"], 8)


def test_patching_preprocessing_with_unknown_keys_is_400(upload, api, model):
    upload()
    response = api.patch(f"{URL}1/", {"preprocessing": {"bogus": 1}}, format="json")
    assert response.status_code == 400


def test_archiving_a_version(upload, api, model):
    upload()
    response = api.post(f"{URL}1/archive/")
    assert response.status_code == 200
    assert response.json()["status"] == "archived"


def test_an_unknown_version_is_404(api, model):
    response = api.get(f"{URL}7/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "version_not_found"


def test_listing_versions_filters_by_status(upload, api, model):
    upload(onnx_models.tiny_classifier(seed=1))
    upload(onnx_models.unsupported_operator())
    body = api.get(URL, {"status": "failed"}).json()
    assert [v["version"] for v in body["results"]] == [2]
    assert body["count"] == 1


def test_patching_labels_that_do_not_fit_the_classes_is_422(upload, api, model):
    upload()
    response = api.patch(f"{URL}1/", {"labels": ["a", "b"]}, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "labels_mismatch"
    assert ModelVersion.objects.get(model=model).labels == []


def test_a_failed_version_carries_a_stable_failure_code(upload, api, model):
    upload(onnx_models.unsupported_operator())
    body = api.get(f"{URL}1/").json()
    assert body["status"] == "failed"
    assert body["failure_code"] in ("runtime_load_failed", "onnx_check_failed")
