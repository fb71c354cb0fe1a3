"""Authenticating with API keys: every way a key can be wrong gets a specific 401."""

import datetime as dt

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey
from apps.accounts.services.api_keys import api_key_authenticate, api_key_forget, api_key_revoke

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/"


def call(header_value: str | None = None, x_api_key: str | None = None):
    client = APIClient()
    if header_value is not None:
        client.credentials(HTTP_AUTHORIZATION=header_value)
    if x_api_key is not None:
        client.credentials(HTTP_X_API_KEY=x_api_key)
    return client.get(URL)


def assert_401(response, code: str) -> None:
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == code


def test_a_key_works_in_the_authorization_header(key_client):
    assert key_client().get(URL).status_code == 200


def test_a_key_works_in_x_api_key(key_client):
    key = key_client().key
    assert call(x_api_key=key).status_code == 200


def test_a_revoked_key_is_401(key_client):
    client = key_client()
    ApiKey.objects.filter(pk=client.api_key.pk).update(revoked_at=timezone.now())
    assert_401(client.get(URL), "api_key_revoked")


def test_an_expired_key_is_401(key_client):
    client = key_client()
    ApiKey.objects.filter(pk=client.api_key.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert_401(client.get(URL), "api_key_expired")


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda k: k[:-5], id="truncated"),
        pytest.param(lambda k: "xyz_" + k[4:], id="wrong-prefix"),
        pytest.param(lambda k: k.upper(), id="malformed-case"),
        pytest.param(lambda k: "garbage", id="garbage"),
        pytest.param(lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"), id="wrong-secret"),
        pytest.param(lambda k: k[:4] + "zzzzzzzz" + k[12:], id="unknown-lookup-id"),
    ],
)
def test_a_bad_key_is_401(key_client, mangle):
    key = key_client().key
    assert_401(call(f"Api-Key {mangle(key)}"), "invalid_api_key")
    assert_401(call(x_api_key=mangle(key)), "invalid_api_key")


def test_an_api_key_header_with_extra_parts_is_401(key_client):
    key = key_client().key
    assert_401(call(f"Api-Key {key} extra"), "invalid_api_key")


def test_a_key_of_an_inactive_owner_is_401(key_client, user):
    client = key_client()
    user.is_active = False
    user.save()
    assert_401(client.get(URL), "user_inactive")


def test_authenticating_a_key_costs_one_indexed_query_then_a_cache_hit(key_client):
    client = key_client()
    client.get(URL)  # first use writes last_used_at
    api_key_forget([client.api_key.prefix])
    with CaptureQueriesContext(connection) as queries:
        api_key_authenticate(client.key)
    assert len(queries) == 1
    assert "prefix" in queries[0]["sql"]
    with CaptureQueriesContext(connection) as queries:
        api_key_authenticate(client.key)
    assert len(queries) == 0


def test_a_revoked_key_stops_working_at_once_despite_the_cache(key_client):
    client = key_client()
    assert client.get(URL).status_code == 200
    api_key_revoke(api_key=ApiKey.objects.get(pk=client.api_key.pk))
    assert client.get(URL).status_code == 401


def test_deactivating_the_owner_stops_cached_keys_at_once(key_client, user):
    client = key_client()
    assert client.get(URL).status_code == 200
    user.is_active = False
    user.save()
    assert client.get(URL).status_code == 401


def test_last_used_is_written_at_most_once_a_minute(key_client):
    client = key_client()
    client.get(URL)
    first = ApiKey.objects.get(pk=client.api_key.pk).last_used_at
    assert first is not None
    client.get(URL)
    assert ApiKey.objects.get(pk=client.api_key.pk).last_used_at == first
    ApiKey.objects.filter(pk=client.api_key.pk).update(last_used_at=first - dt.timedelta(minutes=2))
    cache.delete(f"apikey-used:{client.api_key.pk}")  # as the marker expires after a minute
    client.get(URL)
    assert ApiKey.objects.get(pk=client.api_key.pk).last_used_at > first - dt.timedelta(minutes=1)


def test_a_process_asks_the_shared_marker_once_per_interval(key_client, settings, monkeypatch):
    from apps.accounts.services import api_keys

    settings.LOCAL_CACHE_SECONDS = 2
    api_keys._touched.clear()
    api_keys._local_keys.clear()
    client = key_client()
    calls = []

    class CountingCache:
        def __getattr__(self, name):
            return getattr(cache, name)

        def add(self, key, *args, **kwargs):
            calls.append(key)
            return cache.add(key, *args, **kwargs)

    monkeypatch.setattr(api_keys, "cache", CountingCache())
    for _ in range(3):
        assert client.get(URL).status_code == 200
    assert [c for c in calls if c.startswith("apikey-used:")] == [f"apikey-used:{client.api_key.pk}"]
    assert ApiKey.objects.get(pk=client.api_key.pk).last_used_at is not None
    api_keys._touched.clear()
    api_keys._local_keys.clear()
