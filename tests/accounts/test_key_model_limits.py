"""A key limited to named models sees only those models' audit rows and jobs."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from apps.inference.models import Prediction
from apps.jobs.models import BatchJob
from tests.factories import UserFactory
from tests.inference.conftest import encode, tiny_version  # noqa: F401  (a fixture)
from tests.jobs.conftest import enqueued  # noqa: F401  (a fixture)

pytestmark = pytest.mark.django_db


def rows(user, model_name: str, count: int) -> None:
    for _ in range(count):
        Prediction.objects.create(
            user=user, model_name=model_name, version_number=1, status="succeeded", source="sync"
        )


def job(owner, model_name: str) -> BatchJob:
    return BatchJob.objects.create(owner=owner, model_name=model_name, version_number=1, kind="image")


@pytest.mark.parametrize("staff", [False, True])
def test_the_prediction_list_shows_only_the_keys_models(key_client, user, staff):
    owner = UserFactory(username="carol", is_staff=True) if staff else user
    rows(user, "allowed", 2)
    rows(user, "secret", 3)
    client = key_client(scopes=["predict"], owner=owner, model_names=["allowed"])
    listed = client.get("/api/v1/predictions/").json()["results"]
    assert [r["model"] for r in listed] == ["allowed", "allowed"]
    response = client.get("/api/v1/predictions/", {"model": "secret"})
    assert response.status_code == 200
    assert response.json()["results"] == []
    # an unlimited key of the same owner still sees both models
    assert len(key_client(scopes=["predict"], owner=owner).get("/api/v1/predictions/").json()["results"]) == 5


def test_jobs_on_other_models_are_not_found_with_a_limited_key(key_client, user):
    allowed, secret = job(user, "allowed"), job(user, "secret")
    client = key_client(scopes=["jobs"], model_names=["allowed"])
    assert [j["id"] for j in client.get("/api/v1/jobs/").json()["results"]] == [str(allowed.id)]
    assert client.get(f"/api/v1/jobs/{allowed.id}/").status_code == 200
    for path in ("", "results/"):
        response = client.get(f"/api/v1/jobs/{secret.id}/{path}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "job_not_found"
    response = client.post(f"/api/v1/jobs/{secret.id}/cancel/")
    assert response.status_code == 404
    assert BatchJob.objects.get(pk=secret.pk).status == secret.status  # untouched
    assert client.delete(f"/api/v1/jobs/{secret.id}/").status_code == 404
    assert BatchJob.objects.filter(pk=secret.pk).exists()
    # the owner's unlimited key still sees both
    assert len(key_client(scopes=["jobs"]).get("/api/v1/jobs/").json()["results"]) == 2


@pytest.mark.usefixtures("tiny_version", "enqueued")
def test_a_limited_key_cannot_replay_another_keys_job_on_a_model_it_is_not_granted(key_client):
    png = encode(Image.new("RGB", (8, 8), "red"), "PNG")

    def submit(client):
        upload = SimpleUploadedFile("a.png", png, content_type="image/png")
        body = {"model": "tiny", "inputs": [upload]}
        return client.post("/api/v1/jobs/", body, format="multipart", HTTP_IDEMPOTENCY_KEY="k1")

    first = submit(key_client(scopes=["jobs"]))
    assert first.status_code == 202, first.content
    response = submit(key_client(scopes=["jobs"], model_names=["other"]))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_not_granted"
    assert "job" not in response.json()["error"]["details"]
    assert BatchJob.objects.count() == 1


@pytest.mark.usefixtures("tiny_version", "enqueued")
def test_a_reused_idempotency_key_does_not_reveal_a_job_on_another_model(key_client, user):
    from tests.factories import MLModelFactory
    from tests.inference.conftest import ready_version
    from tests.onnx_models import tiny_classifier

    ready_version(MLModelFactory(name="other", owner=user), tiny_classifier(seed=3), labels=["a", "b", "c"])
    png = encode(Image.new("RGB", (8, 8), "red"), "PNG")

    def submit(client, model):
        upload = SimpleUploadedFile("a.png", png, content_type="image/png")
        body = {"model": model, "inputs": [upload]}
        return client.post("/api/v1/jobs/", body, format="multipart", HTTP_IDEMPOTENCY_KEY="k2")

    assert submit(key_client(scopes=["jobs"]), "tiny").status_code == 202
    response = submit(key_client(scopes=["jobs"], model_names=["other"]), "other")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert response.json()["error"]["details"] == {}
    response = submit(key_client(scopes=["jobs"]), "other")  # an unlimited key is told which job
    assert response.json()["error"]["details"]["job"] == str(BatchJob.objects.get().id)


def test_a_staff_users_limited_key_sees_only_its_models_jobs(key_client, user):
    staff = UserFactory(username="carol", is_staff=True)
    allowed, secret = job(user, "allowed"), job(staff, "secret")
    client = key_client(scopes=["jobs"], owner=staff, model_names=["allowed"])
    assert [j["id"] for j in client.get("/api/v1/jobs/").json()["results"]] == [str(allowed.id)]
    assert client.get(f"/api/v1/jobs/{secret.id}/").status_code == 404  # though staff, and the job its own
    assert len(key_client(scopes=["jobs"], owner=staff).get("/api/v1/jobs/").json()["results"]) == 2
