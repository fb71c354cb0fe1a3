"""The admin's OAuth pages, and the login page of ordinary users."""

import pytest
from django.test import Client
from oauth2_provider.models import get_access_token_model

from apps.oauth.models import Application
from tests.oauth.conftest import bearer

pytestmark = pytest.mark.django_db

AccessToken = get_access_token_model()


@pytest.fixture
def admin_browser(staff_user) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


def test_the_admin_lists_applications_and_their_tokens(admin_browser, machine_token):
    _, application = machine_token()
    page = admin_browser.get("/admin/oauth/application/")
    assert page.status_code == 200
    assert application.client_id.encode() in page.content
    tokens = admin_browser.get(f"/admin/oauth2_provider/accesstoken/?application__id__exact={application.pk}")
    assert tokens.status_code == 200
    assert b"1 access token" in tokens.content
    assert admin_browser.get(f"/admin/oauth/application/{application.pk}/change/").status_code == 200


def test_the_admins_add_form_shows_a_generated_secret_once(admin_browser):
    page = admin_browser.get("/admin/oauth/application/add/").content.decode()
    assert "Copy this secret now" in page


def test_the_admin_disables_an_application_and_its_tokens_stop(admin_browser, machine_token):
    token, application = machine_token()
    response = admin_browser.post(
        "/admin/oauth/application/", {"action": "disable", "_selected_action": [application.pk]}
    )
    assert response.status_code == 302
    assert Application.objects.get().is_disabled
    assert bearer(token).get("/api/v1/me/").json()["error"]["code"] == "application_disabled"


def test_the_admin_revokes_every_token_of_an_application(admin_browser, machine_token):
    token, application = machine_token()
    admin_browser.post(
        "/admin/oauth/application/", {"action": "revoke_tokens", "_selected_action": [application.pk]}
    )
    assert AccessToken.objects.count() == 0
    assert bearer(token).get("/api/v1/me/").status_code == 401


def test_the_admin_refuses_an_application_with_a_grant_the_platform_does_not_offer(admin_browser, user):
    response = admin_browser.post(
        "/admin/oauth/application/add/",
        {
            "name": "legacy",
            "user": user.pk,
            "authorization_grant_type": "password",
            "client_type": "confidential",
            "redirect_uris": "",
            "scopes": '["predict"]',
            "model_names": "[]",
            "client_secret": "x" * 64,
        },
    )
    assert response.status_code == 200  # the form again, with the error
    assert b"Only the authorization code and client credentials grants." in response.content
    assert not Application.objects.exists()


def test_failed_logins_lock_the_address_out(user, settings):
    settings.AUTH_FAILURE_RATE = "2/min"
    browser = Client()
    wrong = {"username": "alice", "password": "wrong"}
    assert browser.post("/login/", wrong).status_code == 200
    assert browser.post("/login/", wrong).status_code == 200
    locked = browser.post("/login/", wrong)
    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content
    assert int(locked["Retry-After"]) > 0
    # Locked out, even with the right password, until the window ends.
    assert browser.post("/login/", {"username": "alice", "password": "secret-password"}).status_code == 429


def test_a_wrong_password_shows_the_form_again(user):
    page = Client().post("/login/", {"username": "alice", "password": "wrong"})
    assert page.status_code == 200
    assert b"The username or password is wrong." in page.content


def test_logging_out_needs_a_post(browser):
    assert browser.get("/logout/").status_code == 405
    assert browser.post("/logout/").status_code == 302
