import datetime as dt

import pytest
from django.utils import timezone

from apps.accounts.models import ApiKey

pytestmark = pytest.mark.django_db

URL = "/api/v1/api-keys/"


def test_it_creates_a_key_and_shows_the_secret_once(api, user):
    response = api.post(URL, {"name": "ci", "scopes": ["predict", "models:read"]}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    key = body["key"]
    assert key.startswith("mlp_") and len(key) == 4 + 8 + 1 + 43
    assert body["key_prefix"] == key[:12]
    assert body["scopes"] == ["models:read", "predict"]
    assert body["status"] == "active"

    stored = ApiKey.objects.get(owner=user)
    assert key not in (stored.digest, stored.prefix)
    assert key.split("_", 2)[2] not in stored.digest
    listed = api.get(URL).json()["results"]
    assert [k["key_prefix"] for k in listed] == [key[:12]]
    assert "key" not in listed[0]
    assert "key" not in api.get(f"{URL}{stored.pk}/").json()


def test_it_sets_expiry_models_and_a_per_key_rate(api):
    response = api.post(
        URL,
        {
            "name": "k",
            "scopes": ["predict"],
            "models": ["a", "b"],
            "expires_in_days": 30,
            "rate_limit_per_minute": 5,
        },
        format="json",
    )
    assert response.status_code == 201
    api_key = ApiKey.objects.get()
    assert api_key.model_names == ["a", "b"]
    assert api_key.rate_limit_per_minute == 5
    assert (
        timezone.now() + dt.timedelta(days=29) < api_key.expires_at < timezone.now() + dt.timedelta(days=31)
    )


@pytest.mark.parametrize(
    "body",
    [
        {"name": "k", "scopes": []},
        {"name": "k", "scopes": ["admin"]},
        {"name": "k"},
        {"scopes": ["predict"]},
        {"name": "k", "scopes": ["predict"], "expires_in_days": 0},
        {"name": "k", "scopes": ["predict"], "models": ["not a slug"]},
    ],
)
def test_it_rejects_bad_key_requests(api, body):
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_input"
    assert not ApiKey.objects.exists()


def test_revoking_a_key_keeps_the_row_and_is_idempotent(api, key_client):
    client = key_client()
    key_id = client.api_key.pk
    assert api.delete(f"{URL}{key_id}/").status_code == 204
    assert api.delete(f"{URL}{key_id}/").status_code == 204
    assert api.get(f"{URL}{key_id}/").json()["status"] == "revoked"
    response = client.get("/api/v1/models/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_revoked"


def test_users_cannot_see_or_revoke_each_others_keys(client_for, other_user, key_client):
    client = key_client()
    other = client_for(other_user)
    assert other.get(f"{URL}{client.api_key.pk}/").status_code == 404
    assert other.delete(f"{URL}{client.api_key.pk}/").status_code == 404
    assert other.get(URL).json()["results"] == []


def test_a_key_cannot_manage_keys(key_client):
    client = key_client()
    response = client.post(URL, {"name": "more", "scopes": ["predict"]}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "api_key_not_allowed"
    assert client.delete(f"{URL}{client.api_key.pk}/").status_code == 403


def test_create_api_key_command_prints_a_working_key(user, capsys):
    from django.core.management import call_command
    from rest_framework.test import APIClient

    call_command(
        "create_api_key", "alice", "--name", "cli", "--scopes", "models:read", "--expires-in-days", "7"
    )
    key = capsys.readouterr().out.strip()
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    assert client.get("/api/v1/models/").status_code == 200
    assert ApiKey.objects.get(name="cli").expires_at is not None


def test_create_api_key_command_refuses_unknown_users(db):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="No user"):
        call_command("create_api_key", "nobody", "--name", "x")


def test_an_absurd_per_key_rate_is_400(api):
    response = api.post(
        URL, {"name": "k", "scopes": ["predict"], "rate_limit_per_minute": 10**20}, format="json"
    )
    assert response.status_code == 400


def test_create_api_key_command_refuses_an_expiry_past_the_calendar(user):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="too large"):
        call_command("create_api_key", "alice", "--name", "cli", "--expires-in-days", "1000000000")
    assert not ApiKey.objects.filter(name="cli").exists()
