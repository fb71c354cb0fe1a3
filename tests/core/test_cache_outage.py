"""With Redis down, requests go on: cache reads miss, rate limits fail open (or 503 by setting)."""

import pytest
from django.core.cache import caches

from apps.core.cache import RedisCache

pytestmark = pytest.mark.django_db


@pytest.fixture
def dead_redis(settings):
    """The shared cache pointed at a port where nothing listens (a stopped Redis)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.CACHES = {
        "default": {
            "BACKEND": "apps.core.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    assert isinstance(caches["default"], RedisCache)
    return caches["default"]


def test_reads_miss_and_fills_are_dropped(dead_redis):
    assert dead_redis.get("k", "fallback") == "fallback"
    assert dead_redis.get_many(["a", "b"]) == {}
    assert dead_redis.add("k", 1) is False
    dead_redis.set("k", 1)


def test_deletes_fail_loudly(dead_redis):
    from redis.exceptions import ConnectionError

    with pytest.raises(ConnectionError):
        dead_redis.delete("k")


def test_api_key_requests_are_served_without_rate_limits(key_client, settings, request):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "registry_write": "1/hour"}
    client = key_client()
    request.getfixturevalue("dead_redis")
    assert client.get("/api/v1/models/").status_code == 200
    for _ in range(3):
        assert client.post("/api/v1/models/", {"name": "m"}, format="json").status_code in (201, 409)


def test_rate_limits_can_fail_closed_with_503(key_client, settings, request):
    settings.RATE_LIMIT_FAIL_OPEN = False
    client = key_client()
    request.getfixturevalue("dead_redis")
    response = client.post("/api/v1/models/", {"name": "m"}, format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
