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


@pytest.fixture
def live_redis(settings):
    """The shared cache on the machine's Redis (as in CI), under a key prefix of its own."""
    import os
    import uuid

    settings.CACHES = {
        "default": {
            "BACKEND": "apps.core.cache.RedisCache",
            "LOCATION": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            "KEY_PREFIX": f"test-{uuid.uuid4().hex[:8]}",
        }
    }
    return caches["default"]


def test_a_counter_gets_its_expiry_on_the_first_hit_only(live_redis):
    assert live_redis.incr_with_expiry("window:1", 1, 30) == 1
    assert live_redis.incr_with_expiry("window:1", 3, 90) == 4
    client = live_redis._cache.get_client(write=True)
    key = live_redis.make_and_validate_key("window:1")
    assert 0 < client.ttl(key) <= 30  # the later hit did not extend it
    client.delete(key)
