"""Uploads in other formats converted for real: the conversion task runs (eagerly, in this
process) and starts the sandboxed child converter, then validation runs as for ONNX.

Needs the converter extras (requirements-extras.txt, installed in CI)."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.registry.intake import sandbox
from apps.registry.models import ModelVersion
from tests.factories import MLModelFactory
from tests.registry import intake_models

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
pytest.importorskip("torch")

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/m/versions/"
TOLERANCE = 1e-4  # the stated parity: max |ONNX - original| on float outputs


@pytest.fixture
def model(user):
    return MLModelFactory(name="m", owner=user, task="tensor")


@pytest.fixture
def convert(api, model, django_capture_on_commit_callbacks):
    """Upload a file and run what its commit enqueues (conversion, then validation)."""

    def send(content: bytes, name: str, **fields) -> ModelVersion:
        with django_capture_on_commit_callbacks(execute=True):
            response = api.post(
                URL, {"file": SimpleUploadedFile(name, content), **fields}, format="multipart"
            )
        assert response.status_code == 201, response.content
        assert response.json()["status"] == "converting"
        return ModelVersion.objects.get(model=model, number=response.json()["version"])

    return send


def assert_converted(version: ModelVersion, fmt: str) -> dict:
    assert version.status == "ready", (version.failure_code, version.status_reason)
    report = version.converted_from
    assert report["format"] == fmt
    parity = report["parity"]
    assert parity["tolerance"] == {"max_abs_diff": TOLERANCE}
    assert len(parity["checks"]) == 4  # the sample input and three random ones
    assert 0 <= parity["max_abs_diff"] <= TOLERANCE
    assert report["sandbox"]["environment"] == "empty"
    assert version.artifact.name.endswith(".onnx") and version.signature["inputs"]
    print(f"parity {fmt}: max abs diff {parity['max_abs_diff']:.3g}")  # the bench figure (-s)
    return report


def test_a_savedmodel_zip_is_converted_checked_and_validated(convert, tmp_path):
    version = convert(intake_models.savedmodel_zip(tmp_path), "cnn.zip")
    report = assert_converted(version, "savedmodel")
    assert report["signature_name"] == "serving_default"
    assert report["framework"]["tensorflow"] and report["converter"]["tf2onnx"]
    assert version.signature["inputs"][0]["shape"] == [-1, 8, 8, 1]


def test_a_keras_file_is_loaded_in_safe_mode_and_converted(convert, tmp_path):
    report = assert_converted(convert(intake_models.keras_file(tmp_path), "cnn.keras"), "keras")
    assert report["framework"]["keras"]


def test_a_torchscript_archive_is_converted_with_the_torchscript_exporter(convert, tmp_path):
    signature = json.dumps([{"name": "input", "dtype": "float32", "shape": [-1, 1, 8, 8]}])
    version = convert(intake_models.torchscript_file(tmp_path), "cnn.pt", input_signature=signature)
    report = assert_converted(version, "torchscript")
    assert report["converter"]["exporter"] == "torchscript (dynamo=False)"
    assert "deprecate" in report["converter"]["note"]


def test_a_torch_export_archive_is_converted(convert, tmp_path):
    version = convert(intake_models.torch_export_file(tmp_path), "cnn.pt2")
    report = assert_converted(version, "torch-export")
    assert report["inputs"][0]["shape"][0] == -1  # the program's dynamic batch


def assert_failed(version: ModelVersion, code: str, *words: str) -> None:
    assert version.status == "failed", version.status
    assert version.failure_code == code, (version.failure_code, version.status_reason)
    for word in words:
        assert word in version.status_reason, version.status_reason
    assert version.converted_from["error"] == {"code": code, "message": version.status_reason}
    assert not version.artifact


def test_a_savedmodel_with_several_signatures_and_none_chosen_fails_naming_them(convert, tmp_path):
    version = convert(intake_models.savedmodel_with_signatures_zip(tmp_path), "two.zip")
    assert_failed(version, "signature_ambiguous", "double", "halve", "signature_name")


def test_the_chosen_signature_of_several_is_converted(convert, tmp_path):
    version = convert(
        intake_models.savedmodel_with_signatures_zip(tmp_path), "two.zip", signature_name="halve"
    )
    assert assert_converted(version, "savedmodel")["signature_name"] == "halve"


def test_a_keras_file_with_a_lambda_layer_is_refused_by_safe_mode(convert, tmp_path):
    version = convert(intake_models.keras_file(tmp_path, with_lambda=True), "lambda.keras")
    assert_failed(version, "keras_unsafe", "safe mode", "Lambda")


def test_an_unsupported_tensorflow_op_fails_naming_it(convert, tmp_path):
    version = convert(intake_models.savedmodel_with_unsupported_op_zip(tmp_path), "igamma.zip")
    assert_failed(version, "unsupported_op", "Igamma")


@pytest.mark.parametrize(
    ("limits", "code", "words"),
    [
        ({"CONVERSION_MEMORY_LIMIT_MB": 700}, "out_of_memory", ("memory", "700 MB")),
        ({"CONVERSION_CPU_SECONDS": 1}, "cpu_time_limit", ("CPU time", "1 s")),
    ],
    ids=["memory", "cpu-time"],
)
def test_a_converter_out_of_memory_or_time_fails_the_version_and_the_worker_goes_on(
    convert, tmp_path, settings, limits, code, words
):
    content = intake_models.savedmodel_zip(tmp_path)
    defaults = {name: getattr(settings, name) for name in limits}
    for name, value in limits.items():
        setattr(settings, name, value)
    assert_failed(convert(content, "cnn.zip"), code, *words)
    # The same worker (this process) converts the next upload once the limits allow it.
    for name, value in defaults.items():
        setattr(settings, name, value)
    again = convert(
        intake_models.savedmodel_zip(tmp_path / "again", intake_models.keras_cnn(seed=1)), "cnn2.zip"
    )
    assert_converted(again, "savedmodel")


@pytest.mark.parametrize(
    ("content", "name", "extra"),
    [("savedmodel", "cnn.zip", "tensorflow-cpu and tf2onnx"), ("torchscript", "cnn.pt", "torch")],
)
def test_a_worker_without_the_extras_fails_the_version_naming_what_to_install(
    convert, tmp_path, settings, content, name, extra
):
    # The child cannot import the converters, as on a platform installed without the extras.
    settings.CONVERSION_CHILD_BLOCKED_MODULES = ["tensorflow", "tf2onnx", "torch", "keras"]
    fields = {}
    if content == "torchscript":
        data = intake_models.torchscript_file(tmp_path)
        fields["input_signature"] = json.dumps(
            [{"name": "input", "dtype": "float32", "shape": [-1, 1, 8, 8]}]
        )
    else:
        data = intake_models.savedmodel_zip(tmp_path)
    version = convert(data, name, **fields)
    assert_failed(version, "converter_missing", extra, "pip install -r requirements-extras.txt")


def test_the_child_gets_an_empty_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://secret@db/x")
    environment = sandbox.child_environment(tmp_path)
    assert "DATABASE_URL" not in environment and "SECRET_KEY" not in environment
    assert environment["HOME"] == environment["TMPDIR"] == str(tmp_path)


def test_required_network_isolation_that_the_kernel_refuses_fails_the_version(
    convert, tmp_path, settings, monkeypatch
):
    settings.CONVERSION_NETWORK_ISOLATION = "required"
    monkeypatch.setattr(sandbox, "network_isolation_available", lambda: False)
    version = convert(
        intake_models.torchscript_file(tmp_path),
        "cnn.pt",
        input_signature=json.dumps([{"name": "input", "dtype": "float32", "shape": [-1, 1, 8, 8]}]),
    )
    assert_failed(version, "sandbox_unavailable", "unshare --net")
    assert version.converted_from["sandbox"]["network_isolated"] is False
