"""Revocation (RFC 7009) and introspection (RFC 7662)."""

import datetime as dt
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import get_access_token_model

from apps.oauth import services
from tests.factories import UserFactory
from tests.oauth.conftest import basic, bearer, refresh

pytestmark = pytest.mark.django_db

AccessToken = get_access_token_model()


def post(url: str, data: dict, application=None, secret: str | None = None, **extra: str):
    headers = {}
    if application is not None:
        headers["HTTP_AUTHORIZATION"] = basic(
            application.client_id, secret or application.client_secret_plain
        )
    return Client().post(
        url, urlencode(data), content_type="application/x-www-form-urlencoded", **headers, **extra
    )


def revoke(application, token: str, **data: str):
    return post("/oauth/revoke/", {"token": token, **data}, application)


def introspect(application, token: str, **kwargs):
    return post("/oauth/introspect/", {"token": token}, application, **kwargs)


# --- Revocation --------------------------------------------------------------------------------


def test_revoking_an_access_token_stops_it_at_once(machine_token):
    token, application = machine_token()
    assert bearer(token).get("/api/v1/me/").status_code == 200  # cached
    assert revoke(application, token).status_code == 200
    assert bearer(token).get("/api/v1/me/").json()["error"]["code"] == "invalid_token"


def test_revoking_a_refresh_token_revokes_its_access_token(code_flow):
    tokens, application = code_flow()
    assert revoke(application, tokens["refresh_token"], token_type_hint="refresh_token").status_code == 200
    assert bearer(tokens["access_token"]).get("/api/v1/me/").status_code == 401
    assert refresh(application, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_revoking_an_access_token_revokes_its_refresh_token(code_flow):
    tokens, application = code_flow()
    assert revoke(application, tokens["access_token"]).status_code == 200
    assert refresh(application, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_revoking_an_unknown_token_is_200(make_app):
    """RFC 7009 §2.2: the client cannot tell an unknown token from a revoked one."""
    assert revoke(make_app(), "mlpat_" + "D" * 43).status_code == 200


def test_a_client_cannot_revoke_another_clients_token(machine_token, make_app):
    token, _ = machine_token()
    assert revoke(make_app(), token).status_code == 200
    assert bearer(token).get("/api/v1/me/").status_code == 200


def test_revoking_needs_the_clients_authentication(machine_token):
    token, application = machine_token()
    response = post("/oauth/revoke/", {"token": token}, application, secret="wrong")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert bearer(token).get("/api/v1/me/").status_code == 200


def test_revoking_without_a_token_is_invalid_request(make_app):
    response = post("/oauth/revoke/", {}, make_app())
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


# --- Introspection -----------------------------------------------------------------------------


def test_introspection_describes_an_active_access_token(machine_token):
    token, application = machine_token(scope="predict jobs", model_names=["tiny"])
    response = introspect(application, token)
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["active"] is True
    assert body["scope"] == "jobs predict"
    assert body["client_id"] == application.client_id
    assert body["username"] == "alice"
    assert body["token_type"] == "Bearer"
    assert body["models"] == ["tiny"]
    assert body["exp"] > body["iat"]


def test_introspection_describes_an_active_refresh_token(code_flow):
    tokens, application = code_flow()
    body = introspect(application, tokens["refresh_token"]).json()
    assert body["active"] is True
    assert body["token_type"] == "refresh_token"
    assert body["scope"] == "jobs predict"


@pytest.fixture
def gateway(make_app):
    """A resource server's client: an application of a staff user may introspect any token."""
    return make_app(owner=UserFactory(username="gateway", is_staff=True), scopes=["predict"])


@pytest.mark.parametrize("state", ["expired", "revoked", "disabled", "inactive", "unknown", "malformed"])
def test_introspection_says_inactive_whenever_the_platform_would_refuse_the_token(
    machine_token, gateway, user, state
):
    token, application = machine_token()
    if state == "expired":
        AccessToken.objects.update(expires=timezone.now() - dt.timedelta(seconds=1))
    elif state == "revoked":
        services.token_revoke(access_token=AccessToken.objects.get())
    elif state == "disabled":
        services.application_update(application=application, disabled=True)
    elif state == "inactive":
        user.is_active = False
        user.save()
    elif state == "unknown":
        token = "mlpat_" + "E" * 43
    else:
        token = "not a token"
    assert bearer(token).get("/api/v1/me/").status_code == 401
    response = introspect(gateway, token)
    assert response.status_code == 200
    assert response.json() == {"active": False}


def test_a_client_sees_only_its_own_tokens(machine_token, make_app):
    token, _ = machine_token()
    assert introspect(make_app(), token).json() == {"active": False}


def test_an_application_of_a_staff_user_may_introspect_any_token(machine_token, gateway):
    token, application = machine_token()
    body = introspect(gateway, token).json()
    assert body["active"] is True
    assert body["client_id"] == application.client_id


def test_introspection_needs_client_authentication(machine_token):
    token, application = machine_token()
    response = introspect(application, token, secret="wrong")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    response = post("/oauth/introspect/", {"token": token})
    assert response.status_code == 401


def test_a_bearer_token_does_not_authenticate_an_introspection(machine_token):
    token, _ = machine_token()
    response = Client().post(
        "/oauth/introspect/",
        urlencode({"token": token}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 401


def test_a_public_client_cannot_introspect(code_flow, make_app):
    tokens, _ = code_flow()
    public = make_app(grant_type="authorization_code", client_type="public")
    response = post("/oauth/introspect/", {"token": tokens["access_token"], "client_id": public.client_id})
    assert response.status_code == 401


def test_introspection_without_a_token_is_invalid_request(make_app):
    response = post("/oauth/introspect/", {}, make_app())
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_failed_introspection_authentications_are_throttled(make_app, settings):
    settings.AUTH_FAILURE_RATE = "2/min"
    application = make_app()
    statuses = [introspect(application, "x", secret="wrong").status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
