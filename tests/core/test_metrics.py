"""/metrics: restricted, and the platform's own metrics move with what happens."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from prometheus_client.parser import text_string_to_metric_families

from apps.jobs.services import job_run
from tests.inference.conftest import fresh_session_cache, photo, tiny_version  # noqa: F401

pytestmark = pytest.mark.django_db


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_are_refused_outside_the_allowed_networks_without_the_token(client, settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    settings.METRICS_TOKEN = "s3cret"
    response = client.get("/metrics")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


def test_predictions_jobs_and_throttling_are_counted(
    key_client,
    tiny_version,  # noqa: F811
    client,
    settings,
    django_capture_on_commit_callbacks,
    monkeypatch,
):
    monkeypatch.setattr("apps.jobs.services.submitting.enqueue_job", lambda job_id: None)
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "predict": "3/hour"}
    api = key_client()
    before = scrape(client)
    image = SimpleUploadedFile("a.jpg", photo("coffee"), content_type="image/jpeg")
    assert api.post("/api/v1/models/tiny/predict", {"image": [image]}, format="multipart").status_code == 200
    bad = SimpleUploadedFile("b.jpg", b"not an image", content_type="image/jpeg")
    assert api.post("/api/v1/models/tiny/predict", {"image": [bad]}, format="multipart").status_code == 422
    files = [SimpleUploadedFile(f"{i}.jpg", photo("coffee"), content_type="image/jpeg") for i in range(3)]
    job_id = api.post("/api/v1/jobs/", {"model": "tiny", "inputs": files}, format="multipart").json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        job_run(job_id=job_id)
    statuses = [
        api.post("/api/v1/models/tiny/predict", {"image": [image]}, format="multipart").status_code
        for image in [
            SimpleUploadedFile("a.jpg", photo("coffee"), content_type="image/jpeg") for _ in range(2)
        ]
    ]
    assert statuses == [200, 429]
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    tiny = {"model": "tiny", "version": "1"}
    assert delta("mlplatform_predictions_total", **tiny, source="sync", status="succeeded") == 2
    assert delta("mlplatform_predictions_total", **tiny, source="sync", status="failed") == 1
    assert delta("mlplatform_predictions_total", **tiny, source="job", status="succeeded") == 3
    assert delta("mlplatform_job_items_total", status="succeeded") == 3
    assert delta("mlplatform_jobs_total", status="succeeded") == 1
    assert delta("mlplatform_inference_seconds_count", **tiny, stage="infer") >= 2
    assert delta("mlplatform_batch_size_count", source="job") == 1
    assert delta("mlplatform_batch_size_sum", source="job") == 3
    assert delta("mlplatform_throttled_total", scope="predict") == 1
    assert value(after, "mlplatform_model_sessions_loaded") >= 1
    assert delta("mlplatform_model_load_seconds_count") >= 1
    assert any(name == "django_http_requests_total_by_method_total" for name, _ in after)
