import pytest

from apps.registry.models import ModelAlias, ModelAliasHistory
from tests.factories import MLModelFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/m/aliases/"


@pytest.fixture
def model(user):
    return MLModelFactory(name="m", owner=user)


@pytest.fixture
def v1(model):
    return ModelVersionFactory(model=model, number=1)


@pytest.fixture
def v2(model):
    return ModelVersionFactory(model=model, number=2)


def test_it_sets_an_alias_and_records_history(api, user, model, v1):
    response = api.put(f"{URL}production/", {"version": 1}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["version"] == 1
    entry = ModelAliasHistory.objects.get()
    assert (entry.action, entry.from_number, entry.to_number, entry.changed_by) == ("set", None, 1, user)


def test_it_moves_an_alias_atomically_and_logs_from_and_to(api, model, v1, v2):
    api.put(f"{URL}production/", {"version": 1}, format="json")
    response = api.put(f"{URL}production/", {"version": 2}, format="json")
    assert response.status_code == 200
    assert ModelAlias.objects.get(model=model, name="production").version == v2
    history = api.get("/api/v1/models/m/alias-history/", {"alias": "production"}).json()["results"]
    assert [(h["action"], h["from_number"], h["to_number"]) for h in history] == [
        ("move", 1, 2),
        ("set", None, 1),
    ]


def test_setting_an_alias_to_its_current_version_logs_nothing(api, model, v1):
    api.put(f"{URL}staging/", {"version": 1}, format="json")
    api.put(f"{URL}staging/", {"version": 1}, format="json")
    assert ModelAliasHistory.objects.count() == 1


@pytest.mark.parametrize("status", ["failed", "archived", "pending", "validating"])
def test_an_alias_cannot_point_at_a_version_that_is_not_ready(api, model, status):
    ModelVersionFactory(model=model, number=1, status=status)
    response = api.put(f"{URL}production/", {"version": 1}, format="json")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "version_not_ready"
    assert error["details"]["status"] == status
    assert not ModelAlias.objects.exists()
    assert not ModelAliasHistory.objects.exists()


def test_an_alias_to_an_unknown_version_is_404(api, model):
    response = api.put(f"{URL}production/", {"version": 9}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "version_not_found"


def test_an_alias_name_must_be_a_slug(api, model, v1):
    response = api.put("/api/v1/models/m/aliases/not%20a%20slug/", {"version": 1}, format="json")
    assert response.status_code == 404


def test_a_missing_version_number_is_400(api, model, v1):
    response = api.put(f"{URL}production/", {"version": "one"}, format="json")
    assert response.status_code == 400
    assert "version" in response.json()["error"]["details"]


def test_it_deletes_an_alias_and_logs_it(api, model, v1):
    api.put(f"{URL}production/", {"version": 1}, format="json")
    assert api.delete(f"{URL}production/").status_code == 204
    assert not ModelAlias.objects.exists()
    assert ModelAliasHistory.objects.first().action == "delete"
    assert api.delete(f"{URL}production/").status_code == 404


def test_it_lists_aliases_and_shows_them_on_the_model(api, model, v1, v2):
    api.put(f"{URL}production/", {"version": 1}, format="json")
    api.put(f"{URL}staging/", {"version": 2}, format="json")
    assert [(a["name"], a["version"]) for a in api.get(URL).json()] == [("production", 1), ("staging", 2)]
    assert api.get("/api/v1/models/m/").json()["aliases"] == {"production": 1, "staging": 2}
    assert api.get(f"{URL}staging/").json()["version"] == 2


def test_a_version_under_an_alias_cannot_be_archived(api, model, v1):
    api.put(f"{URL}production/", {"version": 1}, format="json")
    response = api.post("/api/v1/models/m/versions/1/archive/")
    assert response.status_code == 409
    assert response.json()["error"]["details"]["aliases"] == ["production"]


def test_others_cannot_move_aliases_of_an_internal_model(client_for, other_user, user):
    model = MLModelFactory(name="m", owner=user, visibility="internal")
    ModelVersionFactory(model=model, number=1)
    client = client_for(other_user)
    assert client.get(URL).status_code == 200
    assert client.put(f"{URL}production/", {"version": 1}, format="json").status_code == 403


def test_aliases_of_a_private_model_are_invisible_to_others(client_for, other_user, user):
    model = MLModelFactory(name="m", owner=user)
    ModelVersionFactory(model=model, number=1)
    client = client_for(other_user)
    assert client.get(URL).status_code == 404
    assert client.put(f"{URL}production/", {"version": 1}, format="json").status_code == 404
    assert client.get("/api/v1/models/m/alias-history/").status_code == 404


def test_an_alias_name_longer_than_the_column_is_400(api, model, v1):
    response = api.put(f"{URL}{'a' * 65}/", {"version": 1}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_input"
    assert not ModelAlias.objects.exists()
    assert api.put(f"{URL}{'a' * 64}/", {"version": 1}, format="json").status_code == 200


def test_force_does_not_put_an_alias_on_a_gated_version_archived_since(client_for, staff_user, model):
    ModelVersionFactory(model=model, number=1, status="archived", failure_code="accuracy_gate")
    response = client_for(staff_user).put(f"{URL}prod/", {"version": 1, "force": True}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "version_not_ready"
    assert not ModelAlias.objects.exists()
