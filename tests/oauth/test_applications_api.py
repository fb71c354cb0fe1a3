"""Managing OAuth applications and their tokens: /api/v1/oauth/applications/."""

import pytest
from oauth2_provider.models import get_access_token_model

from tests.oauth.conftest import REDIRECT_URI, bearer, client_credentials

pytestmark = pytest.mark.django_db

URL = "/api/v1/oauth/applications/"
AccessToken = get_access_token_model()


def create(api, **fields):
    body = {"name": "pipeline", "grant_type": "client_credentials", "scopes": ["predict"], **fields}
    return api.post(URL, body, format="json")


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code


def test_registering_shows_the_secret_once(api):
    response = create(api, scopes=["predict", "jobs"], models=["tiny"])
    assert response.status_code == 201, response.content
    body = response.json()
    assert len(body["client_secret"]) == 128
    assert body["grant_type"] == "client_credentials"
    assert body["client_type"] == "confidential"
    assert body["scopes"] == ["jobs", "predict"]
    assert body["models"] == ["tiny"]
    assert body["status"] == "active"
    again = api.get(f"{URL}{body['id']}/").json()
    assert "client_secret" not in again
    assert again["client_id"] == body["client_id"]


def test_the_registered_secret_gets_a_token(api):
    body = create(api).json()
    from tests.oauth.conftest import token_request

    response = token_request(
        {"grant_type": "client_credentials"}, auth=(body["client_id"], body["client_secret"])
    )
    assert response.status_code == 200


def test_registering_a_third_party_application(api):
    response = create(api, grant_type="authorization_code", redirect_uris=[REDIRECT_URI], scopes=["predict"])
    assert response.status_code == 201, response.content
    assert response.json()["redirect_uris"] == [REDIRECT_URI]


def test_a_public_client_has_no_secret(api):
    response = create(
        api, grant_type="authorization_code", client_type="public", redirect_uris=["http://127.0.0.1:8765/cb"]
    )
    assert response.status_code == 201, response.content
    assert response.json()["client_secret"] is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"grant_type": "authorization_code"}, "redirect_uris"),
        (
            {"grant_type": "authorization_code", "redirect_uris": ["http://client.example.com/cb"]},
            "redirect_uris",
        ),
        (
            {"grant_type": "authorization_code", "redirect_uris": ["https://x.example.com/cb#frag"]},
            "redirect_uris",
        ),
        ({"grant_type": "authorization_code", "redirect_uris": ["javascript:alert(1)"]}, "redirect_uris"),
        ({"redirect_uris": [REDIRECT_URI]}, "redirect_uris"),
        ({"client_type": "public"}, "client_type"),
    ],
)
def test_an_invalid_application_is_400_naming_the_field(api, fields, field):
    response = create(api, **fields)
    assert_error(response, 400, "invalid_application")
    assert field in response.json()["error"]["details"]


@pytest.mark.parametrize(
    "fields",
    [
        {"scopes": []},
        {"scopes": ["admin"]},
        {"grant_type": "password"},
        {"grant_type": "implicit"},
        {"models": ["Not A Slug"]},
        {"name": ""},
    ],
)
def test_bad_fields_are_400(api, fields):
    assert_error(create(api, **fields), 400, "invalid_input")


def test_listing_shows_only_ones_own_applications(api, client_for, other_user):
    create(api)
    create(client_for(other_user), name="bobs")
    names = [a["name"] for a in api.get(URL).json()["results"]]
    assert names == ["pipeline"]


def test_another_users_application_is_404(api, client_for, other_user):
    bobs = create(client_for(other_user)).json()
    assert_error(api.get(f"{URL}{bobs['id']}/"), 404, "application_not_found")
    assert_error(
        api.patch(f"{URL}{bobs['id']}/", {"disabled": True}, format="json"), 404, "application_not_found"
    )


def test_disabling_stops_its_tokens_and_enabling_brings_them_back(api):
    body = create(api).json()
    token = client_credentials_for(body)
    response = api.patch(f"{URL}{body['id']}/", {"disabled": True}, format="json")
    assert response.json()["status"] == "disabled"
    assert bearer(token).get("/api/v1/me/").json()["error"]["code"] == "application_disabled"
    api.patch(f"{URL}{body['id']}/", {"disabled": False}, format="json")
    assert bearer(token).get("/api/v1/me/").status_code == 200


def test_changing_scopes_and_models(api):
    body = create(api, scopes=["predict", "jobs"]).json()
    response = api.patch(f"{URL}{body['id']}/", {"scopes": ["jobs"], "models": ["a", "b"]}, format="json")
    assert response.status_code == 200
    assert response.json()["scopes"] == ["jobs"]
    assert response.json()["models"] == ["a", "b"]


def test_a_new_secret_replaces_the_old_one(api):
    body = create(api).json()
    response = api.post(f"{URL}{body['id']}/secret/")
    assert response.status_code == 201
    new_secret = response.json()["client_secret"]
    from tests.oauth.conftest import token_request

    old = token_request({"grant_type": "client_credentials"}, auth=(body["client_id"], body["client_secret"]))
    assert old.status_code == 401
    new = token_request({"grant_type": "client_credentials"}, auth=(body["client_id"], new_secret))
    assert new.status_code == 200


def test_a_public_client_gets_no_new_secret(api):
    body = create(
        api, grant_type="authorization_code", client_type="public", redirect_uris=[REDIRECT_URI]
    ).json()
    assert_error(api.post(f"{URL}{body['id']}/secret/"), 400, "public_client")


def test_tokens_are_listed_and_revoked_one_by_one(api):
    body = create(api).json()
    token = client_credentials_for(body)
    listed = api.get(f"{URL}{body['id']}/tokens/").json()["results"]
    assert len(listed) == 1
    assert listed[0]["user"] == "alice"
    assert listed[0]["scopes"] == ["predict"]
    assert listed[0]["status"] == "active"
    assert listed[0]["refreshable"] is False
    assert "token" not in listed[0]
    assert api.delete(f"{URL}{body['id']}/tokens/{listed[0]['id']}/").status_code == 204
    assert bearer(token).get("/api/v1/me/").status_code == 401
    assert_error(api.delete(f"{URL}{body['id']}/tokens/{listed[0]['id']}/"), 404, "token_not_found")


def test_all_tokens_are_revoked_at_once(api, code_flow, make_app):
    body = create(api).json()
    tokens = [client_credentials_for(body) for _ in range(2)]
    assert api.delete(f"{URL}{body['id']}/tokens/").status_code == 204
    assert all(bearer(t).get("/api/v1/me/").status_code == 401 for t in tokens)


def test_revoking_all_tokens_of_a_code_application_revokes_its_refresh_tokens(code_flow, api, user):
    tokens, application = code_flow()
    assert api.delete(f"{URL}{application.pk}/tokens/").status_code == 204
    from tests.oauth.conftest import refresh

    assert refresh(application, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_an_api_key_cannot_manage_applications(key_client):
    assert_error(key_client().get(URL), 403, "api_key_not_allowed")


def test_without_credentials_it_is_401(anon):
    assert_error(anon.get(URL), 401, "not_authenticated")


def client_credentials_for(body: dict) -> str:
    class App:
        client_id = body["client_id"]
        client_secret_plain = body["client_secret"]

    response = client_credentials(App())
    assert response.status_code == 200, response.content
    return response.json()["access_token"]
