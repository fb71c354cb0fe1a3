"""Uploads in other formats, as the web process takes or refuses them: nothing is converted
here (the conversion is not enqueued), so these tests need no converter process."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.registry.models import ModelVersion
from tests.conftest import stored_files
from tests.factories import MLModelFactory
from tests.registry import intake_models

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/m/versions/"
SIGNATURE = json.dumps([{"name": "input", "dtype": "float32", "shape": [-1, 1, 8, 8]}])


@pytest.fixture
def model(user):
    return MLModelFactory(name="m", owner=user, task="tensor")


@pytest.fixture
def post(api, model, monkeypatch, django_capture_on_commit_callbacks):
    """POST a file; the conversion task is not run (its enqueue is recorded instead)."""
    enqueued = []
    monkeypatch.setattr(
        "apps.registry.services.converting.enqueue_version_conversion",
        lambda version: enqueued.append(version.pk),
    )

    def send(content: bytes, name: str, **fields):
        upload = SimpleUploadedFile(name, content)
        with django_capture_on_commit_callbacks(execute=True):
            return api.post(URL, {"file": upload, **fields}, format="multipart")

    send.enqueued = enqueued
    return send


def assert_refused(response, status: int, code: str, model_store_root) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code, error
    assert not ModelVersion.objects.exists()
    assert stored_files(model_store_root) == []
    return error


def test_a_torchscript_upload_is_stored_as_the_source_and_converting(post, tmp_path, model_store_root):
    content = intake_models.torchscript_file(tmp_path)
    response = post(content, "cnn.pt", input_signature=SIGNATURE)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "converting"
    assert body["converted_from"]["format"] == "torchscript"
    assert body["converted_from"]["options"]["input_signature"][0]["shape"] == [-1, 1, 8, 8]
    version = ModelVersion.objects.get()
    assert not version.artifact
    assert version.source.name.endswith(".pt")
    assert [p.name for p in stored_files(model_store_root)] == [f"source-{version.sha256[:12]}.pt"]
    assert post.enqueued == [version.pk]


def test_the_duplicate_check_uses_the_uploaded_source(post, tmp_path):
    content = intake_models.torchscript_file(tmp_path)
    assert post(content, "cnn.pt", input_signature=SIGNATURE).status_code == 201
    again = post(content, "again.pt", input_signature=SIGNATURE)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "duplicate_version"


def test_a_torchscript_upload_without_its_input_signature_is_a_400_naming_the_field(
    post, tmp_path, model_store_root
):
    error = assert_refused(
        post(intake_models.torchscript_file(tmp_path), "cnn.pt"), 400, "invalid_input", model_store_root
    )
    assert "input_signature" in error["message"]
    assert "input_signature" in error["details"]


def test_an_input_signature_that_is_not_a_list_of_tensors_is_a_400(post, tmp_path, model_store_root):
    bad = json.dumps([{"name": "input", "dtype": "complex64", "shape": [1]}])
    error = assert_refused(
        post(intake_models.torchscript_file(tmp_path), "cnn.pt", input_signature=bad),
        400,
        "invalid_input",
        model_store_root,
    )
    assert "complex64" in error["message"]


def test_a_zip_without_saved_model_pb_is_refused(post, model_store_root):
    content = intake_models.savedmodel_zip_without_graph()
    error = assert_refused(post(content, "model.zip"), 422, "savedmodel_missing", model_store_root)
    assert "saved_model.pb" in error["message"]


@pytest.mark.parametrize("name", ["model.pt", "model.pkl", "model.joblib", "model.bin"])
def test_a_plain_pickle_is_refused_whatever_its_name(post, model_store_root, name):
    error = assert_refused(post(intake_models.plain_pickle(), name), 422, "pickle_refused", model_store_root)
    assert "torch.jit.save" in error["message"]


def test_a_torch_save_of_a_module_is_refused_as_a_pickle(post, tmp_path, model_store_root):
    content = intake_models.pickled_torch_module(tmp_path)
    error = assert_refused(
        post(content, "model.pt", input_signature=SIGNATURE), 422, "pickle_refused", model_store_root
    )
    assert "torch.save" in error["message"]


def test_a_pt_that_is_a_zip_bomb_is_refused(post, model_store_root):
    error = assert_refused(
        post(intake_models.zip_bomb_pt(), "model.pt", input_signature=SIGNATURE),
        422,
        "archive_bomb",
        model_store_root,
    )
    assert "zip bomb" in error["message"]


def test_an_archive_unpacking_past_the_limit_is_a_413(post, settings, model_store_root):
    settings.CONVERSION_ARCHIVE_MAX_UNPACKED_MB = 1
    content = intake_models.zip_bomb_pt(unpacked_mb=2)
    settings.CONVERSION_ARCHIVE_MAX_RATIO = 10**6  # only the total is at issue here
    assert_refused(
        post(content, "model.pt", input_signature=SIGNATURE), 413, "archive_bomb", model_store_root
    )


@pytest.mark.parametrize(
    ("name", "fields", "declared"),
    [
        ("model.pt2", {}, "torch-export"),  # the name says .pt2, the bytes are TorchScript
        ("model.bin", {"format": "keras"}, "keras"),  # the field says Keras
    ],
)
def test_a_declared_format_that_does_not_match_the_bytes_is_refused(
    post, tmp_path, model_store_root, name, fields, declared
):
    content = intake_models.torchscript_file(tmp_path)
    error = assert_refused(post(content, name, **fields), 422, "format_mismatch", model_store_root)
    assert error["details"] == {"declared": declared, "detected": "torchscript"}


def test_a_pt2_with_pickled_weights_is_refused(post, tmp_path, model_store_root):
    import io
    import zipfile

    buffer = io.BytesIO()
    config = {"config": {"w": {"path_name": "weight_0", "use_pickle": True}}}
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("m/archive_format", b"pt2")
        archive.writestr("m/data/weights/model_weights_config.json", json.dumps(config))
    assert_refused(post(buffer.getvalue(), "model.pt2"), 422, "pickle_refused", model_store_root)


def test_an_onnx_upload_is_taken_as_before(post, model_store_root):
    from tests import onnx_models

    response = post(onnx_models.tiny_classifier(), "model.onnx")
    assert response.status_code == 201
    assert response.json()["status"] == "pending"
    assert response.json()["converted_from"] == {}
    assert post.enqueued == []
