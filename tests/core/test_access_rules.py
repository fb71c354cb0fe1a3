"""Rules the README states about access: who changes a model's visibility, what creating a
model with a taken name reveals (ADR 0026), and what /readyz tells an anonymous caller."""

import json

import pytest

from apps.registry.models import MLModel, ModelGrant
from tests.factories import MLModelFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def private_model(user):
    return MLModelFactory(name="secret-model", owner=user, description="the plan")


@pytest.fixture
def maintainer(private_model):
    person = UserFactory(username="maintainer")
    ModelGrant.objects.create(model=private_model, user=person, role="maintainer")
    return person


@pytest.mark.parametrize("visibility", ["internal", "private"])
def test_a_maintainer_cannot_change_visibility(client_for, private_model, maintainer, visibility):
    if visibility == "private":  # the other direction: an internal model made private
        MLModel.objects.filter(pk=private_model.pk).update(visibility="internal")
    before = MLModel.objects.get(pk=private_model.pk).visibility
    wanted = "internal" if before == "private" else "private"
    response = client_for(maintainer).patch(
        "/api/v1/models/secret-model/", {"visibility": wanted}, format="json"
    )
    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "visibility_owner_only"
    assert MLModel.objects.get(pk=private_model.pk).visibility == before


def test_a_maintainer_still_changes_the_rest(client_for, private_model, maintainer):
    body = {"description": "new", "visibility": "private"}  # the same visibility is no change
    response = client_for(maintainer).patch("/api/v1/models/secret-model/", body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["description"] == "new"


@pytest.mark.parametrize("who", ["owner", "admin"])
def test_the_owner_and_admins_change_visibility(client_for, private_model, staff_user, who):
    caller = private_model.owner if who == "owner" else staff_user
    response = client_for(caller).patch(
        "/api/v1/models/secret-model/", {"visibility": "internal"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert MLModel.objects.get(pk=private_model.pk).visibility == "internal"


def test_a_taken_name_answers_409_revealing_only_that_it_is_taken(client_for, private_model):
    """ADR 0026: names are global, so a private model's name is not secret; nothing else leaks."""
    stranger = client_for(UserFactory(username="stranger"))
    assert stranger.get("/api/v1/models/secret-model/").status_code == 404
    response = stranger.post("/api/v1/models/", {"name": "secret-model"}, format="json")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "model_exists"
    text = json.dumps(response.json())
    assert private_model.owner.username not in text and "the plan" not in text
    assert MLModel.objects.filter(name="secret-model").count() == 1


def test_readyz_tells_anonymous_callers_only_the_status(client, settings):
    settings.METRICS_ALLOWED_NETWORKS = []
    settings.METRICS_TOKEN = "metrics-token"
    response = client.get("/readyz", REMOTE_ADDR="203.0.113.9")
    assert set(response.json()) == {"status"}
    allowed = client.get("/readyz", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer metrics-token")
    assert allowed.json()["status"] == response.json()["status"]
    assert set(allowed.json()["checks"]) == {"database", "broker", "model_store", "models"}


def test_readyz_hides_the_exception_text_of_a_failed_check(client, settings):
    settings.METRICS_ALLOWED_NETWORKS = []
    settings.METRICS_TOKEN = "metrics-token"
    from mlplatform.celery import app

    original = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens there
    try:
        response = client.get("/readyz", REMOTE_ADDR="203.0.113.9")
        detailed = client.get("/readyz", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer metrics-token")
    finally:
        app.conf.broker_url = original
    assert response.status_code == 503
    assert response.json() == {"status": "not_ready"}
    assert detailed.json()["checks"]["broker"]["error"]


def test_a_job_whose_files_come_under_an_unknown_field_names_the_accepted_ones(api, private_model):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = api.post(
        "/api/v1/jobs/",
        {"model": "secret-model", "images": SimpleUploadedFile("a.jpg", b"\xff\xd8x")},
        format="multipart",
    )
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "empty_job"
    assert error["details"] == {"accepted_fields": ["inputs", "image", "archive"], "file_fields": ["images"]}
    assert (
        "'inputs'" in error["message"] and "'archive'" in error["message"] and "'images'" in error["message"]
    )
