"""The authorization-code grant with PKCE (S256 only): login, consent, the code, the tokens,
and every way the request can be wrong."""

import pytest
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model

from apps.oauth import services
from tests.oauth.conftest import (
    REDIRECT_URI,
    authorize_params,
    bearer,
    consent,
    exchange_code,
    pkce_pair,
    redirect_query,
    refresh,
    token_request,
)

pytestmark = pytest.mark.django_db

AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()


def assert_oauth_error(response, status: int, error: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["error"] == error


def test_a_user_who_is_not_signed_in_is_sent_to_the_login_page(make_app):
    application = make_app(grant_type="authorization_code")
    _, challenge = pkce_pair()
    query = "&".join(f"{k}={v}" for k, v in authorize_params(application, challenge).items())
    response = Client().get(f"/oauth/authorize/?{query}")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/oauth/authorize/")


def test_the_login_page_signs_an_ordinary_user_in_and_goes_back(user):
    browser = Client()
    page = browser.get("/login/?next=/oauth/authorize/%3Fclient_id%3Dx")
    assert page.status_code == 200
    assert b"An application asks to act for you" in page.content
    response = browser.post(
        "/login/",
        {"username": "alice", "password": "secret-password", "next": "/oauth/authorize/?client_id=x"},
    )
    assert response.status_code == 302
    assert response["Location"] == "/oauth/authorize/?client_id=x"


def test_the_consent_page_names_the_application_its_scopes_and_models(make_app, browser):
    application = make_app(grant_type="authorization_code", name="Photo sorter", model_names=["tiny"])
    _, challenge = pkce_pair()
    page = browser.get("/oauth/authorize/", authorize_params(application, challenge))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Authorize Photo sorter?" in text
    assert "Make predictions with the models you can use" in text
    assert "Submit, follow and cancel batch jobs." in text
    assert "<code>tiny</code>" in text


def test_the_flow_gives_a_code_then_tokens_that_act_for_the_consenting_user(make_app, browser, other_user):
    application = make_app(grant_type="authorization_code", owner=other_user)
    verifier, challenge = pkce_pair()
    query = redirect_query(consent(browser, application, challenge))
    assert query["state"] == "xyz"
    assert query["iss"] == "http://testserver"  # RFC 9207
    response = exchange_code(application, query["code"], verifier)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["access_token"].startswith("mlpat_")
    assert body["refresh_token"].startswith("mlprt_")
    assert sorted(body["scope"].split()) == ["jobs", "predict"]
    me = bearer(body["access_token"]).get("/api/v1/me/").json()
    assert me["username"] == "alice"  # the user who consented, not bob who owns the application


def test_a_public_client_uses_pkce_without_a_secret(make_app, browser):
    application = make_app(grant_type="authorization_code", client_type="public")
    verifier, challenge = pkce_pair()
    code = redirect_query(consent(browser, application, challenge))["code"]
    response = Client().post(
        "/oauth/token/",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": application.client_id,
            "code_verifier": verifier,
        },
    )
    assert response.status_code == 200, response.content


def test_denying_redirects_with_access_denied(make_app, browser):
    application = make_app(grant_type="authorization_code")
    _, challenge = pkce_pair()
    query = redirect_query(consent(browser, application, challenge, allow=False))
    assert query["error"] == "access_denied"
    assert AccessToken.objects.count() == 0


def test_a_missing_pkce_challenge_is_refused_before_consent(make_app, browser):
    application = make_app(grant_type="authorization_code")
    query = redirect_query(consent(browser, application, None))
    assert query["error"] == "invalid_request"
    assert "challenge" in query["error_description"].lower()


@pytest.mark.parametrize("method", ["plain", None])
def test_a_plain_pkce_challenge_is_refused_before_consent(make_app, browser, method):
    """S256 only: "plain", and a challenge without a method (which means plain), are refused."""
    application = make_app(grant_type="authorization_code")
    verifier, _ = pkce_pair()
    params = {"code_challenge": verifier, "code_challenge_method": method}
    query = redirect_query(consent(browser, application, None, **params))
    assert query["error"] == "invalid_request"


def test_a_wrong_pkce_verifier_is_invalid_grant(make_app, browser):
    application = make_app(grant_type="authorization_code")
    _, challenge = pkce_pair()
    code = redirect_query(consent(browser, application, challenge))["code"]
    assert_oauth_error(exchange_code(application, code, pkce_pair()[0]), 400, "invalid_grant")


def test_a_missing_pkce_verifier_is_invalid_request(make_app, browser):
    application = make_app(grant_type="authorization_code")
    _, challenge = pkce_pair()
    code = redirect_query(consent(browser, application, challenge))["code"]
    assert_oauth_error(exchange_code(application, code, None), 400, "invalid_request")


def test_a_redirect_uri_that_does_not_match_exactly_is_never_redirected_to(make_app, browser):
    application = make_app(grant_type="authorization_code")
    _, challenge = pkce_pair()
    for uri in (
        "https://client.example.com/callback/",
        "https://client.example.com/callback?x=1",
        "https://evil.example.com/callback",
        "https://client.example.com:8443/callback",
        "http://client.example.com/callback",
    ):
        page = browser.get("/oauth/authorize/", authorize_params(application, challenge, redirect_uri=uri))
        assert page.status_code == 400, uri
        assert b"Mismatching redirect URI." in page.content


def test_the_token_request_must_repeat_the_redirect_uri(make_app, browser):
    application = make_app(grant_type="authorization_code")
    verifier, challenge = pkce_pair()
    code = redirect_query(consent(browser, application, challenge))["code"]
    response = exchange_code(application, code, verifier, redirect_uri="https://client.example.com/other")
    assert_oauth_error(response, 400, "invalid_request")


def test_a_scope_beyond_the_applications_is_refused_at_the_authorization_request(make_app, browser):
    application = make_app(grant_type="authorization_code", scopes=["predict"])
    _, challenge = pkce_pair()
    query = redirect_query(consent(browser, application, challenge, scope="predict jobs"))
    assert query["error"] == "invalid_scope"


def test_an_unknown_client_is_an_error_page_not_a_redirect(browser):
    page = browser.get("/oauth/authorize/", {"client_id": "nobody", "response_type": "code"})
    assert page.status_code == 400
    assert b"Invalid client_id parameter value." in page.content


def test_a_client_credentials_application_cannot_use_the_code_flow(make_app, browser):
    """It has no redirect URI, so the request is refused on a page, never redirected."""
    application = make_app()
    _, challenge = pkce_pair()
    page = browser.get("/oauth/authorize/", authorize_params(application, challenge))
    assert page.status_code == 400
    assert b"Mismatching redirect URI." in page.content


def test_a_disabled_application_cannot_ask_for_consent(make_app, browser):
    application = make_app(grant_type="authorization_code")
    services.application_update(application=application, disabled=True)
    _, challenge = pkce_pair()
    assert browser.get("/oauth/authorize/", authorize_params(application, challenge)).status_code == 400


def test_a_reused_code_is_refused_and_the_tokens_it_gave_are_revoked(make_app, browser):
    application = make_app(grant_type="authorization_code")
    verifier, challenge = pkce_pair()
    code = redirect_query(consent(browser, application, challenge))["code"]
    tokens = exchange_code(application, code, verifier).json()
    refreshed = refresh(application, tokens["refresh_token"]).json()  # issued from the code too
    assert bearer(refreshed["access_token"]).get("/api/v1/me/").status_code == 200

    assert_oauth_error(exchange_code(application, code, verifier), 400, "invalid_grant")

    assert bearer(tokens["access_token"]).get("/api/v1/me/").json()["error"]["code"] == "invalid_token"
    assert bearer(refreshed["access_token"]).get("/api/v1/me/").json()["error"]["code"] == "invalid_token"
    assert_oauth_error(refresh(application, refreshed["refresh_token"]), 400, "invalid_grant")


def test_a_code_of_another_client_is_invalid_grant(make_app, browser):
    first = make_app(grant_type="authorization_code")
    second = make_app(grant_type="authorization_code")
    verifier, challenge = pkce_pair()
    code = redirect_query(consent(browser, first, challenge))["code"]
    assert_oauth_error(exchange_code(second, code, verifier), 400, "invalid_grant")
    assert exchange_code(first, code, verifier).status_code == 200  # unharmed by the attempt


def test_an_expired_code_is_invalid_grant(make_app, browser):
    application = make_app(grant_type="authorization_code")
    verifier, challenge = pkce_pair()
    code = redirect_query(consent(browser, application, challenge))["code"]
    get_grant_model().objects.update(expires=timezone.now())
    assert_oauth_error(exchange_code(application, code, verifier), 400, "invalid_grant")


def test_a_code_of_a_user_deactivated_since_consent_is_invalid_grant(make_app, browser, user, other_user):
    application = make_app(grant_type="authorization_code", owner=other_user)
    verifier, challenge = pkce_pair()
    code = redirect_query(consent(browser, application, challenge))["code"]
    user.is_active = False
    user.save()
    assert_oauth_error(exchange_code(application, code, verifier), 400, "invalid_grant")


def test_refreshing_rotates_the_refresh_token(code_flow):
    tokens, application = code_flow()
    response = refresh(application, tokens["refresh_token"])
    assert response.status_code == 200, response.content
    rotated = response.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert rotated["access_token"] != tokens["access_token"]
    assert bearer(rotated["access_token"]).get("/api/v1/me/").status_code == 200
    # The access token of the rotated-out pair is revoked with it.
    assert bearer(tokens["access_token"]).get("/api/v1/me/").status_code == 401


def test_a_refresh_token_reused_after_rotation_revokes_the_whole_family(code_flow):
    tokens, application = code_flow()
    rotated = refresh(application, tokens["refresh_token"]).json()
    assert_oauth_error(refresh(application, tokens["refresh_token"]), 400, "invalid_grant")
    # A stolen, rotated-out token replayed: the live descendants are revoked too.
    assert bearer(rotated["access_token"]).get("/api/v1/me/").status_code == 401
    assert_oauth_error(refresh(application, rotated["refresh_token"]), 400, "invalid_grant")


def test_refreshing_cannot_widen_the_scope(code_flow):
    tokens, application = code_flow(scope="predict")
    response = refresh(application, tokens["refresh_token"])
    assert response.json()["scope"] == "predict"
    response = token_request(
        {
            "grant_type": "refresh_token",
            "refresh_token": response.json()["refresh_token"],
            "scope": "predict jobs",
        },
        auth=(application.client_id, application.client_secret_plain),
    )
    assert_oauth_error(response, 400, "invalid_scope")


def test_a_refresh_token_of_a_deactivated_user_is_invalid_grant(code_flow, make_app, user, other_user):
    tokens, application = code_flow(make_app(grant_type="authorization_code", owner=other_user))
    user.is_active = False
    user.save()
    assert_oauth_error(refresh(application, tokens["refresh_token"]), 400, "invalid_grant")


def test_a_refresh_token_of_another_client_is_invalid_grant(code_flow, make_app):
    tokens, _ = code_flow()
    other = make_app(grant_type="authorization_code")
    assert_oauth_error(refresh(other, tokens["refresh_token"]), 400, "invalid_grant")


def test_a_refresh_token_of_a_disabled_application_is_invalid_client(code_flow):
    tokens, application = code_flow()
    services.application_update(application=application, disabled=True)
    assert_oauth_error(refresh(application, tokens["refresh_token"]), 401, "invalid_client")
    assert RefreshToken.objects.filter(revoked__isnull=True).count() == 1  # kept, enabling brings it back


def test_two_exchanges_of_one_code_racing_revoke_what_the_winner_got(make_app, browser):
    """Both got past validate_code; the loser finds the grant deleted by the winner."""
    from oauthlib.common import Request as OAuthlibRequest
    from oauthlib.oauth2.rfc6749.errors import InvalidGrantError

    from apps.oauth.server import PlatformValidator

    application = make_app(grant_type="authorization_code")
    verifier, challenge = pkce_pair()
    code = redirect_query(consent(browser, application, challenge))["code"]
    tokens = exchange_code(application, code, verifier).json()
    loser = OAuthlibRequest("/oauth/token/")
    loser.client = application
    with pytest.raises(InvalidGrantError):
        PlatformValidator().invalidate_authorization_code(application.client_id, code, loser)
    assert bearer(tokens["access_token"]).get("/api/v1/me/").status_code == 401
    assert_oauth_error(refresh(application, tokens["refresh_token"]), 400, "invalid_grant")
