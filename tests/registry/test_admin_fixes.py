"""The console's broken paths of issue 18, each through the admin's own forms."""

import re

import pytest

from apps.registry import services
from apps.registry.models import MLModel, ModelAlias, ModelAliasHistory, ModelVersion
from tests.factories import MLModelFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db

CLASSIFIER_SIGNATURE = {
    "inputs": [{"name": "x", "dtype": "float", "shape": [-1, 3, 8, 8]}],
    "outputs": [{"name": "logits", "dtype": "float", "shape": [-1, 3]}],
    "dynamic_batch": True,
}


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def version(staff_user) -> ModelVersion:
    return ModelVersionFactory(
        model=MLModelFactory(owner=staff_user),
        number=1,
        signature=CLASSIFIER_SIGNATURE,
        labels=["a", "b", "c"],
    )


def test_adding_an_alias_links_to_the_alias_it_made(admin_client, version):
    response = admin_client.post(
        "/admin/registry/modelalias/add/",
        {"model": version.model.pk, "name": "production", "version": version.pk},
        follow=True,
    )
    alias = ModelAlias.objects.get()
    assert f"/admin/registry/modelalias/{alias.pk}/change/".encode() in response.content
    assert b"/None/" not in response.content


def test_save_and_continue_editing_an_alias_opens_the_alias(admin_client, version):
    response = admin_client.post(
        "/admin/registry/modelalias/add/",
        {"model": version.model.pk, "name": "production", "version": version.pk, "_continue": "1"},
    )
    alias = ModelAlias.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/registry/modelalias/{alias.pk}/change/"
    page = admin_client.get(response["Location"])
    assert page.status_code == 200 and b"doesn" not in page.content


def test_moving_an_alias_in_the_admin_is_logged_as_a_move(admin_client, version):
    second = ModelVersionFactory(model=version.model, number=2)
    alias = services.alias_set(model=version.model, name="production", version=version, user=None)
    response = admin_client.post(
        f"/admin/registry/modelalias/{alias.pk}/change/", {"version": second.pk, "_continue": "1"}
    )
    assert response.status_code == 302, response.content[:3000]
    assert ModelAlias.objects.get().version == second
    assert ModelAliasHistory.objects.first().action == "move"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("labels", '["a", "b"]', b"3 classes but 2 labels"),
        ("preprocessing", '{"resize": "big"}', b"Invalid preprocessing config"),
    ],
)
def test_a_bad_version_edit_is_a_form_error_and_saves_nothing(admin_client, version, field, value, message):
    response = admin_client.post(
        f"/admin/registry/modelversion/{version.pk}/change/",
        {"notes": "edited", "labels": '["a", "b", "c"]', "preprocessing": "{}", field: value},
        follow=True,
    )
    assert response.status_code == 200
    assert message in response.content
    assert b"changed successfully" not in response.content
    # The form comes back with what was typed, to be corrected, and nothing is saved.
    assert b"edited" in response.content
    version.refresh_from_db()
    assert version.notes == "" and version.labels == ["a", "b", "c"] and version.preprocessing == {}


def test_a_good_version_edit_is_saved(admin_client, version):
    response = admin_client.post(
        f"/admin/registry/modelversion/{version.pk}/change/",
        {"notes": "fine", "labels": '["x", "y", "z"]', "preprocessing": '{"resize": 8}'},
    )
    assert response.status_code == 302, response.content[:3000]
    version.refresh_from_db()
    assert (version.notes, version.labels, version.preprocessing["resize"]) == ("fine", ["x", "y", "z"], 8)


def test_a_superuser_deletes_a_model_with_alias_history(admin_client, version):
    services.alias_set(model=version.model, name="production", version=version, user=None)
    confirm = admin_client.get(f"/admin/registry/mlmodel/{version.model.pk}/delete/")
    assert confirm.status_code == 200
    assert b"permission to delete" not in confirm.content
    response = admin_client.post(f"/admin/registry/mlmodel/{version.model.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not MLModel.objects.exists() and not ModelAliasHistory.objects.exists()


def test_the_alias_form_offers_only_ready_versions(admin_client, version):
    failed = ModelVersionFactory(model=version.model, number=2, status="failed")
    page = admin_client.get("/admin/registry/modelalias/add/").content.decode()
    options = re.findall(r'<option value="(\d+)"', page.split('name="version"')[1].split("</select>")[0])
    assert str(version.pk) in options and str(failed.pk) not in options
