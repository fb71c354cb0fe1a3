"""API keys in the admin (issue 18): scopes checked, created with the secret shown once."""

import pytest

from apps.accounts.models import ApiKey
from apps.accounts.services.api_keys import api_key_authenticate, api_key_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def api_key(user) -> ApiKey:
    return api_key_create(owner=user, name="ci", scopes=["predict"]).api_key


def change(admin_client, api_key: ApiKey, **fields):
    data = {"name": api_key.name, "scopes": ["predict"], "model_names": "", **fields}
    return admin_client.post(f"/admin/accounts/apikey/{api_key.pk}/change/", data)


def test_the_admin_refuses_an_unknown_scope(admin_client, api_key):
    response = change(admin_client, api_key, scopes='["superpower"]')
    assert response.status_code == 200
    assert b"superpower" in response.content and b"is not one of the available choices" in response.content
    api_key.refresh_from_db()
    assert api_key.scopes == ["predict"]


def test_the_admin_refuses_a_key_without_scopes(admin_client, api_key):
    response = change(admin_client, api_key, scopes=[])
    assert response.status_code == 200
    api_key.refresh_from_db()
    assert api_key.scopes == ["predict"]


def test_the_admin_changes_scopes_and_the_key_sees_them_at_once(admin_client, api_key, user):
    created = api_key_create(owner=user, name="second", scopes=["predict"])
    assert api_key_authenticate(created.key).scopes == ["predict"]  # now cached
    response = change(admin_client, created.api_key, scopes=["predict", "jobs"], model_names="digits, tiny")
    assert response.status_code == 302, response.content[:3000]
    authenticated = api_key_authenticate(created.key)
    assert authenticated.scopes == ["jobs", "predict"]
    assert authenticated.model_names == ["digits", "tiny"]


def test_a_key_created_in_the_admin_shows_its_secret_once(admin_client, user):
    response = admin_client.post(
        "/admin/accounts/apikey/add/",
        {"name": "from-admin", "owner": user.pk, "scopes": ["predict", "models:read"], "model_names": ""},
    )
    assert response.status_code == 200, response.content[:3000]
    api_key = ApiKey.objects.get(name="from-admin")
    secret = response.context["key"]
    assert secret.startswith(f"mlp_{api_key.prefix}_") and secret.encode() in response.content
    assert api_key_authenticate(secret).pk == api_key.pk
    assert api_key.scopes == ["models:read", "predict"]
    page = admin_client.get(f"/admin/accounts/apikey/{api_key.pk}/change/")
    assert secret.encode() not in page.content


def test_the_admin_add_form_refuses_an_unknown_scope(admin_client, user):
    response = admin_client.post(
        "/admin/accounts/apikey/add/", {"name": "bad", "owner": user.pk, "scopes": ["superpower"]}
    )
    assert response.status_code == 200
    assert not ApiKey.objects.filter(name="bad").exists()
