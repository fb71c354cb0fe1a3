"""Who may do what: roles, visibility, grants and API key scopes, on every registry endpoint."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.registry.models import ModelGrant
from tests import onnx_models
from tests.factories import MLModelFactory, ModelVersionFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def private_model(other_user):
    """Bob's private model with a ready version 1 under alias production."""
    model = MLModelFactory(name="bobs", owner=other_user)
    version = ModelVersionFactory(model=model, number=1)
    model.aliases.create(name="production", version=version)
    return model


def every_registry_call(client):
    """(label, response) for each registry endpoint, called on model 'bobs'."""
    base = "/api/v1/models/bobs"
    upload = {"file": SimpleUploadedFile("m.onnx", onnx_models.tiny_classifier(seed=9))}
    return [
        ("get model", client.get(f"{base}/")),
        ("patch model", client.patch(f"{base}/", {"description": "x"}, format="json")),
        ("list versions", client.get(f"{base}/versions/")),
        ("upload", client.post(f"{base}/versions/", upload, format="multipart")),
        ("get version", client.get(f"{base}/versions/1/")),
        ("patch version", client.patch(f"{base}/versions/1/", {"notes": "x"}, format="json")),
        ("archive", client.post(f"{base}/versions/1/archive/")),
        ("list aliases", client.get(f"{base}/aliases/")),
        ("get alias", client.get(f"{base}/aliases/production/")),
        ("set alias", client.put(f"{base}/aliases/staging/", {"version": 1}, format="json")),
        ("delete alias", client.delete(f"{base}/aliases/production/")),
        ("alias history", client.get(f"{base}/alias-history/")),
        ("grants", client.get(f"{base}/grants/")),
        ("grant", client.put(f"{base}/grants/alice/", {"role": "maintainer"}, format="json")),
        ("delete model", client.delete(f"{base}/")),
    ]


def test_another_users_private_model_is_404_on_every_endpoint(api, private_model):
    for label, response in every_registry_call(api):
        assert response.status_code == 404, label
        assert response.json()["error"]["code"] == "model_not_found", label
    assert private_model.versions.count() == 1


def test_a_private_model_is_absent_from_others_lists(api, private_model):
    assert api.get("/api/v1/models/").json()["results"] == []


def test_a_consumer_grant_makes_a_private_model_readable_only(api, user, private_model):
    ModelGrant.objects.create(model=private_model, user=user, role="consumer")
    results = dict(every_registry_call(api))
    for label in ("get model", "list versions", "get version", "list aliases", "get alias", "alias history"):
        assert results[label].status_code == 200, label
    for label in (
        "patch model",
        "upload",
        "patch version",
        "archive",
        "set alias",
        "delete alias",
        "grants",
        "grant",
        "delete model",
    ):
        assert results[label].status_code == 403, label


def test_a_maintainer_uploads_and_moves_aliases_but_cannot_delete_or_grant(
    api, user, private_model, django_capture_on_commit_callbacks
):
    ModelGrant.objects.create(model=private_model, user=user, role="maintainer")
    with django_capture_on_commit_callbacks(execute=True):
        results = dict(every_registry_call(api))
    for label in ("patch model", "upload", "patch version", "set alias", "grants"):
        assert results[label].status_code in (200, 201), (label, results[label].content)
    assert results["grant"].status_code == 403
    assert results["delete model"].status_code == 403
    assert (
        results["archive"].status_code == 409
    )  # under alias production: refused for the state, not the role


def test_the_owner_grants_and_revokes_roles(client_for, other_user, user, private_model):
    owner = client_for(other_user)
    response = owner.put("/api/v1/models/bobs/grants/alice/", {"role": "consumer"}, format="json")
    assert response.status_code == 200
    assert owner.get("/api/v1/models/bobs/grants/").json() == [
        {
            "user": "alice",
            "role": "consumer",
            "granted_by": "bob",
            "created_at": response.json()["created_at"],
        }
    ]
    assert owner.delete("/api/v1/models/bobs/grants/alice/").status_code == 204
    assert owner.delete("/api/v1/models/bobs/grants/alice/").status_code == 404
    assert (
        owner.put("/api/v1/models/bobs/grants/nobody/", {"role": "consumer"}, format="json").status_code
        == 404
    )
    assert owner.put("/api/v1/models/bobs/grants/alice/", {"role": "god"}, format="json").status_code == 400


def test_staff_may_do_anything(client_for, staff_user, private_model):
    assert client_for(staff_user).get("/api/v1/models/bobs/").status_code == 200
    assert client_for(staff_user).delete("/api/v1/models/bobs/").status_code == 204


# --- API key scopes -------------------------------------------------------------------------------


def test_a_key_without_models_write_cannot_change_the_registry(key_client, user):
    MLModelFactory(name="mine", owner=user)
    client = key_client(scopes=["models:read"])
    assert client.get("/api/v1/models/mine/").status_code == 200
    response = client.patch("/api/v1/models/mine/", {"description": "x"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scope_missing"
    assert client.post("/api/v1/models/", {"name": "new"}, format="json").status_code == 403


def test_a_key_without_models_read_cannot_read_the_registry(key_client):
    response = key_client(scopes=["predict"]).get("/api/v1/models/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scope_missing"


def test_a_key_limited_to_named_models_sees_only_those(key_client, user):
    MLModelFactory(name="a", owner=user)
    MLModelFactory(name="b", owner=user)
    client = key_client(model_names=["a"])
    assert [m["name"] for m in client.get("/api/v1/models/").json()["results"]] == ["a"]
    assert client.get("/api/v1/models/a/").status_code == 200
    response = client.get("/api/v1/models/b/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_not_granted"
    # the same answer whether or not the model exists: names do not leak
    assert client.get("/api/v1/models/does-not-exist/").status_code == 403


def test_a_key_never_exceeds_its_owners_rights(key_client, private_model):
    client = key_client(model_names=["bobs"])
    assert client.get("/api/v1/models/bobs/").status_code == 404


def test_a_key_loses_rights_when_its_owner_does(key_client, user, private_model):
    grant = ModelGrant.objects.create(model=private_model, user=user, role="maintainer")
    client = key_client()
    assert client.patch("/api/v1/models/bobs/", {"description": "x"}, format="json").status_code == 200
    grant.role = "consumer"
    grant.save()
    assert client.patch("/api/v1/models/bobs/", {"description": "y"}, format="json").status_code == 403
    grant.delete()
    assert client.get("/api/v1/models/bobs/").status_code == 404


def test_roles_show_on_me(client_for, key_client, user):
    MLModelFactory(name="mine", owner=user)
    body = key_client().get("/api/v1/me/").json()
    assert body["roles"] == ["maintainer", "consumer"]
    assert body["authenticated_with"].startswith("api_key:mlp_")
    carol = UserFactory(username="carol", is_staff=True)
    assert client_for(carol).get("/api/v1/me/").json()["roles"] == ["admin", "consumer"]
