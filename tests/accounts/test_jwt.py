import datetime as dt

import jwt as pyjwt
import pytest
from django.conf import settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token/"


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_it_issues_tokens_for_a_password(anon, user):
    response = anon.post(TOKEN, {"username": "alice", "password": "secret-password"}, format="json")
    assert response.status_code == 200
    assert bearer(response.json()["access"]).get("/api/v1/me/").json()["username"] == "alice"


def test_a_wrong_password_is_401(anon, user):
    response = anon.post(TOKEN, {"username": "alice", "password": "wrong"}, format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] in ("no_active_account", "authentication_failed")


def test_refresh_rotates_and_blacklists_the_old_token(anon, user):
    refresh = str(RefreshToken.for_user(user))
    first = anon.post(f"{TOKEN}refresh/", {"refresh": refresh}, format="json")
    assert first.status_code == 200
    assert first.json()["refresh"] != refresh
    reused = anon.post(f"{TOKEN}refresh/", {"refresh": refresh}, format="json")
    assert reused.status_code == 401
    assert reused.json()["error"]["code"] == "token_not_valid"


def test_verify_accepts_a_good_token_and_refuses_a_bad_one(anon, user):
    good = str(AccessToken.for_user(user))
    assert anon.post(f"{TOKEN}verify/", {"token": good}, format="json").status_code == 200
    assert anon.post(f"{TOKEN}verify/", {"token": good[:-3] + "abc"}, format="json").status_code == 401


def test_a_token_signed_with_another_secret_is_401(user):
    token = AccessToken.for_user(user)
    forged = pyjwt.encode(
        dict(token.payload), "another-secret-another-secret-another-secret", algorithm="HS256"
    )
    response = bearer(forged).get("/api/v1/models/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_not_valid"


def test_an_expired_token_is_401(user):
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-dt.timedelta(seconds=1))
    response = bearer(str(token)).get("/api/v1/models/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_not_valid"


def test_a_refresh_token_is_not_an_access_token(user):
    response = bearer(str(RefreshToken.for_user(user))).get("/api/v1/models/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_not_valid"


def test_the_access_lifetime_is_short():
    assert settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"] <= dt.timedelta(minutes=15)
