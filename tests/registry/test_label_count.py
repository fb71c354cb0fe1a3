"""Labels are counted against the class scores, not whatever output comes first (issue 18).

The digits demo (a converted scikit-learn classifier) answers `label` [N] (int64) first
and `probabilities` [N, 10] second."""

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.registry.models import ModelVersion
from apps.registry.validation import ModelFileError, class_scores_output, validate_model_file
from tests.factories import MLModelFactory

DIGITS = Path(__file__).resolve().parents[2] / "demo" / "digits" / "model.onnx"


def test_the_class_scores_of_the_digits_model_are_its_probabilities():
    report = validate_model_file(DIGITS, latency_runs=1, throughput_runs=1, label_count=10)
    assert [o["name"] for o in report.signature["outputs"]] == ["label", "probabilities"]
    assert class_scores_output(report.signature)["name"] == "probabilities"


def test_three_labels_on_the_ten_digit_classes_fail_validation():
    with pytest.raises(ModelFileError) as error:
        validate_model_file(DIGITS, latency_runs=1, throughput_runs=1, label_count=3)
    assert error.value.code == "labels_mismatch"
    assert "'probabilities') have 10 classes but 3 labels" in error.value.message


@pytest.mark.django_db
def test_an_upload_of_the_digits_model_with_three_labels_fails(api, user, django_capture_on_commit_callbacks):
    MLModelFactory(name="digits", owner=user, task="image-classification")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/models/digits/versions/",
            {
                "file": SimpleUploadedFile("model.onnx", DIGITS.read_bytes()),
                "labels": SimpleUploadedFile("labels.txt", b"zero\none\ntwo\n"),
            },
            format="multipart",
        )
    assert response.status_code == 201, response.content
    version = ModelVersion.objects.get(model__name="digits")
    assert (version.status, version.failure_code) == ("failed", "labels_mismatch")
