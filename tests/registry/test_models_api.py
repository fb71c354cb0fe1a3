import pytest

from apps.registry.models import MLModel
from tests.factories import MLModelFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/"


def test_it_creates_a_model_owned_by_its_creator(api, user):
    response = api.post(URL, {"name": "resnet", "description": "d", "task": "tensor"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "resnet"
    assert body["owner"] == "alice"
    assert body["visibility"] == "private"
    assert body["latest_version"] is None
    assert MLModel.objects.get(name="resnet").owner == user


def test_it_rejects_a_name_that_is_not_a_slug(api):
    response = api.post(URL, {"name": "not a slug/../x"}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert "name" in error["details"]


def test_it_rejects_a_duplicate_name(api, other_user):
    MLModelFactory(name="taken", owner=other_user)
    response = api.post(URL, {"name": "taken"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "model_exists"


def test_it_rejects_an_unknown_task(api):
    response = api.post(URL, {"name": "x", "task": "speech"}, format="json")
    assert response.status_code == 400
    assert "task" in response.json()["error"]["details"]


def test_it_lists_own_and_internal_models_but_not_others_private(api, user, other_user):
    MLModelFactory(name="mine", owner=user)
    MLModelFactory(name="shared", owner=other_user, visibility="internal")
    MLModelFactory(name="secret", owner=other_user, visibility="private")
    response = api.get(URL)
    assert response.status_code == 200
    names = [m["name"] for m in response.json()["results"]]
    assert names == ["mine", "shared"]


def test_staff_see_every_model(client_for, staff_user, other_user):
    MLModelFactory(name="secret", owner=other_user)
    names = [m["name"] for m in client_for(staff_user).get(URL).json()["results"]]
    assert names == ["secret"]


def test_a_private_model_of_another_user_is_404_not_403(api, other_user):
    MLModelFactory(name="secret", owner=other_user)
    for method in ("get", "patch", "delete"):
        response = getattr(api, method)(f"{URL}secret/", {}, format="json")
        assert response.status_code == 404, method
        assert response.json()["error"]["code"] == "model_not_found"


def test_an_internal_model_is_readable_but_not_writable_by_others(api, other_user):
    MLModelFactory(name="shared", owner=other_user, visibility="internal")
    assert api.get(f"{URL}shared/").status_code == 200
    response = api.patch(f"{URL}shared/", {"description": "mine now"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert api.delete(f"{URL}shared/").status_code == 403


def test_the_owner_updates_description_and_visibility(api, user):
    MLModelFactory(name="m", owner=user)
    response = api.patch(f"{URL}m/", {"description": "new", "visibility": "internal"}, format="json")
    assert response.status_code == 200
    assert response.json()["description"] == "new"
    assert MLModel.objects.get(name="m").visibility == "internal"


def test_deleting_a_model_removes_its_versions_and_files(
    api, user, model_store_root, django_capture_on_commit_callbacks
):
    model = MLModelFactory(name="m", owner=user)
    version = ModelVersionFactory(model=model)
    path = model_store_root / version.artifact.name
    assert path.exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(f"{URL}m/")
    assert response.status_code == 204
    assert not MLModel.objects.filter(name="m").exists()
    assert not path.exists()


def test_deleting_a_model_removes_its_evaluation_sets_files(
    api, user, model_store_root, django_capture_on_commit_callbacks
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.conftest import stored_files

    MLModelFactory(name="m", owner=user, task="tensor")
    line = b'{"inputs": {"input": [[0.0]]}, "label": null}\n'
    upload = SimpleUploadedFile("s.jsonl", line)
    response = api.post(f"{URL}m/evaluation-sets/", {"name": "s", "file": upload}, format="multipart")
    assert response.status_code == 201, response.content
    assert stored_files(model_store_root) != []
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"{URL}m/").status_code == 204
    assert stored_files(model_store_root) == []


def test_unauthenticated_requests_get_401(anon):
    response = anon.get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")
