import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.registry.models import ModelAlias, ModelAliasHistory, ModelVersion
from tests import onnx_models
from tests.factories import MLModelFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


def test_admin_pages_render(admin_client, staff_user):
    version = ModelVersionFactory(model=MLModelFactory(owner=staff_user), signature={"inputs": []})
    for url in [
        "/admin/registry/mlmodel/",
        f"/admin/registry/mlmodel/{version.model.pk}/change/",
        "/admin/registry/modelversion/",
        f"/admin/registry/modelversion/{version.pk}/change/",
        "/admin/registry/modelversion/add/",
        "/admin/registry/modelalias/",
        "/admin/registry/modelalias/add/",
        "/admin/registry/modelaliashistory/",
    ]:
        assert admin_client.get(url).status_code == 200, url


def test_a_version_is_uploaded_from_the_admin(admin_client, staff_user, django_capture_on_commit_callbacks):
    model = MLModelFactory(owner=staff_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/registry/modelversion/add/",
            {
                "model": model.pk,
                "file": SimpleUploadedFile("m.onnx", onnx_models.tiny_classifier()),
                "notes": "",
            },
        )
    assert response.status_code == 302, response.content[:2000]
    version = ModelVersion.objects.get(model=model)
    assert version.status == "ready"


def test_an_admin_upload_of_junk_shows_the_error(admin_client, staff_user):
    model = MLModelFactory(owner=staff_user)
    response = admin_client.post(
        "/admin/registry/modelversion/add/",
        {"model": model.pk, "file": SimpleUploadedFile("m.onnx", b"junk" * 10), "notes": ""},
    )
    assert response.status_code == 200
    assert b"not an ONNX model" in response.content
    assert not ModelVersion.objects.exists()


def test_an_alias_set_in_the_admin_is_logged(admin_client, staff_user):
    version = ModelVersionFactory(model=MLModelFactory(owner=staff_user), number=1)
    response = admin_client.post(
        "/admin/registry/modelalias/add/",
        {"model": version.model.pk, "name": "production", "version": version.pk},
    )
    assert response.status_code == 302
    assert ModelAlias.objects.get().version == version
    assert ModelAliasHistory.objects.get().action == "set"


def test_the_admin_refuses_an_alias_to_a_failed_version(admin_client, staff_user):
    version = ModelVersionFactory(model=MLModelFactory(owner=staff_user), status="failed")
    response = admin_client.post(
        "/admin/registry/modelalias/add/",
        {"model": version.model.pk, "name": "production", "version": version.pk},
    )
    assert response.status_code == 200
    assert not ModelAlias.objects.exists()
