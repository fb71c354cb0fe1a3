"""The client-credentials grant: a machine client gets a short-lived token that acts for the
application's owner, within the application's scopes; every bad request gets RFC 6749's error."""

import pytest
from django.test import Client
from oauth2_provider.models import get_access_token_model

from apps.oauth import services
from tests.oauth.conftest import basic, bearer, client_credentials, token_request

pytestmark = pytest.mark.django_db

AccessToken = get_access_token_model()


def assert_oauth_error(response, status: int, error: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["error"] == error


def test_it_issues_a_bearer_token_that_acts_for_the_owner_without_a_refresh_token(make_app, user):
    application = make_app()
    response = client_credentials(application)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["access_token"].startswith("mlpat_")
    assert body["expires_in"] == 900
    assert "refresh_token" not in body  # RFC 6749 §4.4.3
    assert sorted(body["scope"].split()) == ["jobs", "models:read", "models:write", "predict"]
    assert response["Cache-Control"] == "no-store"
    assert AccessToken.objects.get().user == user
    me = bearer(body["access_token"]).get("/api/v1/me/")
    assert me.status_code == 200
    assert me.json()["username"] == "alice"
    assert me.json()["authenticated_with"] == f"oauth:{application.client_id}"


def test_the_token_is_stored_as_a_digest_only(make_app):
    token = client_credentials(make_app()).json()["access_token"]
    row = AccessToken.objects.get()
    assert row.token == ""
    assert token not in row.token_checksum


def test_the_client_secret_is_stored_as_an_hmac_digest(make_app):
    application = make_app()
    application.refresh_from_db()
    assert application.client_secret.startswith("hmac_sha256$")
    assert application.client_secret_plain not in application.client_secret


def test_it_takes_credentials_in_the_body_too(make_app):
    application = make_app()
    response = token_request(
        {
            "grant_type": "client_credentials",
            "client_id": application.client_id,
            "client_secret": application.client_secret_plain,
        }
    )
    assert response.status_code == 200, response.content


def test_it_narrows_to_the_scope_asked_for(make_app):
    response = client_credentials(make_app(), scope="predict")
    assert response.json()["scope"] == "predict"


def test_a_scope_beyond_the_applications_is_invalid_scope(make_app):
    application = make_app(scopes=["predict"])
    assert_oauth_error(client_credentials(application, scope="predict jobs"), 400, "invalid_scope")


def test_an_unknown_scope_is_invalid_scope(make_app):
    assert_oauth_error(client_credentials(make_app(), scope="admin"), 400, "invalid_scope")


def test_a_wrong_secret_is_invalid_client(make_app):
    response = client_credentials(make_app(), secret="x" * 128)
    assert_oauth_error(response, 401, "invalid_client")


def test_an_unknown_client_is_invalid_client():
    response = token_request({"grant_type": "client_credentials"}, auth=("nobody", "secret"))
    assert_oauth_error(response, 401, "invalid_client")


def test_no_client_authentication_is_invalid_client():
    assert_oauth_error(token_request({"grant_type": "client_credentials"}), 401, "invalid_client")


def test_a_grant_type_the_application_is_not_allowed_is_unauthorized_client(make_app):
    application = make_app(grant_type="authorization_code")
    assert_oauth_error(client_credentials(application), 400, "unauthorized_client")


@pytest.mark.parametrize(
    "grant_type", ["password", "implicit", "urn:ietf:params:oauth:grant-type:device_code"]
)
def test_grants_the_platform_does_not_offer_are_unsupported(make_app, grant_type):
    application = make_app()
    response = token_request(
        {"grant_type": grant_type, "username": "alice", "password": "secret-password", "device_code": "x"},
        auth=(application.client_id, application.client_secret_plain),
    )
    assert_oauth_error(response, 400, "unsupported_grant_type")


def test_a_disabled_application_gets_no_token(make_app):
    application = make_app()
    services.application_update(application=application, disabled=True)
    assert_oauth_error(client_credentials(application), 401, "invalid_client")


def test_an_application_of_an_inactive_owner_gets_no_token(make_app, user):
    application = make_app()
    user.is_active = False
    user.save()
    assert_oauth_error(client_credentials(application), 401, "invalid_client")


def test_a_get_is_refused():
    assert Client().get("/oauth/token/").status_code == 405


def test_many_failed_client_authentications_from_one_address_are_429(make_app, settings):
    settings.AUTH_FAILURE_RATE = "3/min"
    application = make_app()
    statuses = [client_credentials(application, secret="wrong").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    response = client_credentials(application, secret="wrong")
    assert_oauth_error(response, 429, "temporarily_unavailable")
    assert int(response["Retry-After"]) > 0
    # Client secrets are not guessable: the right one still works from that address.
    assert client_credentials(application).status_code == 200


def test_failures_are_counted_per_address(make_app, settings):
    settings.AUTH_FAILURE_RATE = "2/min"
    application = make_app()
    for _ in range(3):
        client_credentials(application, secret="wrong", REMOTE_ADDR="10.0.0.1")
    assert client_credentials(application, secret="wrong", REMOTE_ADDR="10.0.0.2").status_code == 401


def test_basic_auth_with_a_malformed_header_is_invalid_client(make_app):
    response = Client().post(
        "/oauth/token/",
        "grant_type=client_credentials",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION="Basic !!!not-base64",
    )
    assert_oauth_error(response, 401, "invalid_client")


def test_the_secret_of_another_application_is_invalid_client(make_app):
    first, second = make_app(), make_app()
    response = token_request(
        {"grant_type": "client_credentials"}, auth=(first.client_id, second.client_secret_plain)
    )
    assert_oauth_error(response, 401, "invalid_client")
    assert basic("a", "b").startswith("Basic ")
