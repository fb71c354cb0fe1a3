"""OAuth 2.0 test helpers: applications, the token endpoint, and the authorization-code flow
driven as a browser would (log in, consent, follow the redirect)."""

import base64
import hashlib
import secrets
from collections.abc import Callable
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client
from rest_framework.test import APIClient

from apps.oauth import services
from tests.inference.conftest import (  # noqa: F401  (fixtures shared with the inference tests)
    fresh_session_cache,
    tiny_version,
)

REDIRECT_URI = "https://client.example.com/callback"
ALL_SCOPES = ["models:read", "models:write", "predict", "jobs"]


@pytest.fixture
def make_app(user) -> Callable:
    """Register an application (default: alice's machine client with every scope); the result
    carries `client_secret`."""

    def make(grant_type="client_credentials", owner=None, scopes=ALL_SCOPES, **fields):
        if grant_type == "authorization_code":
            fields.setdefault("redirect_uris", [REDIRECT_URI])
        registered = services.application_create(
            owner=owner or user,
            name=fields.pop("name", "test app"),
            grant_type=grant_type,
            scopes=scopes,
            **fields,
        )
        application = registered.application
        application.client_secret_plain = registered.client_secret
        return application

    return make


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def token_request(data: dict, *, auth: tuple[str, str] | None = None, **extra: str):
    """POST to the token endpoint, form-encoded, with HTTP Basic client authentication."""
    headers = {"HTTP_AUTHORIZATION": basic(*auth)} if auth else {}
    return Client().post(
        "/oauth/token/", urlencode(data), content_type="application/x-www-form-urlencoded", **headers, **extra
    )


def client_credentials(application, scope: str | None = None, secret: str | None = None, **extra: str):
    data = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    return token_request(
        data, auth=(application.client_id, secret or application.client_secret_plain), **extra
    )


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def machine_token(make_app) -> Callable:
    """An access token of a client-credentials application: (token, application)."""

    def make(**fields) -> tuple[str, object]:
        scope = fields.pop("scope", None)
        application = make_app(**fields)
        response = client_credentials(application, scope=scope)
        assert response.status_code == 200, response.content
        return response.json()["access_token"], application

    return make


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_params(application, challenge: str | None, **overrides: str) -> dict:
    params = {
        "response_type": "code",
        "client_id": application.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "predict jobs",
        "state": "xyz",
    }
    if challenge is not None:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    params.update(overrides)
    return {key: value for key, value in params.items() if value is not None}


def consent(browser: Client, application, challenge: str | None, allow: bool = True, **overrides: str):
    """GET the consent page as the signed-in `browser`, then POST the form; the response
    (a redirect to the client, or the page with an error)."""
    page = browser.get(
        "/oauth/authorize/?" + urlencode(authorize_params(application, challenge, **overrides))
    )
    if page.status_code != 200 or page.context is None or "form" not in page.context:
        return page
    form = {name: value for name, value in page.context["form"].initial.items() if value is not None}
    if allow:
        form["allow"] = "true"
    return browser.post("/oauth/authorize/", form)


def redirect_query(response) -> dict[str, str]:
    assert response.status_code == 302, response.content
    location = response["Location"]
    assert location.startswith(REDIRECT_URI), location
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


@pytest.fixture
def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def code_flow(make_app, browser) -> Callable:
    """The authorization-code flow with PKCE up to the tokens: (token JSON, application)."""

    def run(application=None, scope: str = "predict jobs") -> tuple[dict, object]:
        application = application or make_app(grant_type="authorization_code")
        verifier, challenge = pkce_pair()
        code = redirect_query(consent(browser, application, challenge, scope=scope))["code"]
        response = exchange_code(application, code, verifier)
        assert response.status_code == 200, response.content
        return response.json(), application

    return run


def exchange_code(application, code: str, verifier: str | None, **overrides: str):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    if verifier is not None:
        data["code_verifier"] = verifier
    data.update(overrides)
    return token_request(data, auth=(application.client_id, application.client_secret_plain))


def refresh(application, refresh_token: str):
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return token_request(data, auth=(application.client_id, application.client_secret_plain))
