"""Request rates per user and per key, and failed-authentication limits per address."""

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import UserLimits
from apps.accounts.ratelimit import Rate, hit, parse_rate

pytestmark = pytest.mark.django_db


def write(client, n: int = 1):
    return [client.post("/api/v1/models/", {"name": f"m-{i}-{id(client)}"}, format="json") for i in range(n)]


def test_rates_parse():
    assert parse_rate("600/min") == Rate(600, 60)
    assert parse_rate("5/10s") == Rate(5, 10)
    assert parse_rate("1000/hour") == Rate(1000, 3600)
    with pytest.raises(ValueError):
        parse_rate("lots")


def test_a_fixed_window_counter_allows_the_limit_then_refuses():
    rate = Rate(3, 60)
    verdicts = [hit("t:1", rate, now=1000.0) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]
    assert verdicts[-1].retry_after == 20  # the window 960..1020 ends in 20 s
    assert hit("t:1", rate, now=1021.0).allowed  # a new window


def test_registry_writes_are_throttled_per_user_with_headers(api, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "registry_write": "3/min"}
    responses = write(api, 4)
    assert [r.status_code for r in responses] == [201, 201, 201, 429]
    first, last = responses[0], responses[-1]
    assert first["X-RateLimit-Limit"] == "3"
    assert first["X-RateLimit-Remaining"] == "2"
    assert int(first["X-RateLimit-Reset"]) > 0
    assert last["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(last["Retry-After"]) <= 60
    error = last.json()["error"]
    assert error["code"] == "throttled"
    assert error["details"]["retry_after"] == int(last["Retry-After"])


def test_reads_are_not_throttled_by_the_write_scope(api, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "registry_write": "1/min"}
    write(api, 2)
    response = api.get("/api/v1/models/")
    assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response


def test_the_limit_is_shared_by_all_of_a_users_credentials(api, key_client, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "registry_write": "2/min"}
    assert write(api)[0].status_code == 201
    assert write(key_client())[0].status_code == 201
    assert write(key_client())[0].status_code == 429


def test_users_are_limited_separately(api, client_for, other_user, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "registry_write": "1/min"}
    assert write(api)[0].status_code == 201
    assert write(client_for(other_user))[0].status_code == 201


def test_an_admin_raises_one_users_rate(api, user, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "registry_write": "1/min"}
    UserLimits.objects.create(user=user, plan="team", registry_write_rate="3/min")
    assert [r.status_code for r in write(api, 4)] == [201, 201, 201, 429]


def test_a_key_with_its_own_cap_is_held_to_it(key_client):
    client = key_client(rate_limit_per_minute=2)
    responses = write(client, 3)
    assert [r.status_code for r in responses] == [201, 201, 429]
    assert responses[0]["X-RateLimit-Limit"] == "2"


def test_many_failed_keys_from_one_address_get_429(db, settings):
    settings.AUTH_FAILURE_RATE = "5/min"
    client = APIClient(REMOTE_ADDR="10.1.1.1")
    codes = [
        client.get("/api/v1/models/", HTTP_X_API_KEY=f"mlp_aaaaaaaa_{i:043d}").status_code for i in range(7)
    ]
    assert codes == [401] * 5 + [429] * 2
    response = client.get("/api/v1/models/", HTTP_X_API_KEY="mlp_aaaaaaaa_" + "0" * 43)
    assert response.json()["error"]["code"] == "throttled"
    assert int(response["Retry-After"]) >= 1
    # another address is unaffected
    other = APIClient(REMOTE_ADDR="10.1.1.2")
    assert other.get("/api/v1/models/", HTTP_X_API_KEY="mlp_aaaaaaaa_" + "0" * 43).status_code == 401


def test_failed_passwords_and_tokens_count_too(user, settings):
    settings.AUTH_FAILURE_RATE = "3/min"
    client = APIClient(REMOTE_ADDR="10.2.2.2")
    bad_password = {"username": "alice", "password": "nope"}
    codes = [client.post("/api/v1/auth/token/", bad_password, format="json").status_code for _ in range(2)]
    codes.append(client.get("/api/v1/models/", HTTP_AUTHORIZATION="Bearer not-a-token").status_code)
    codes.append(client.post("/api/v1/auth/token/", bad_password, format="json").status_code)
    assert codes == [401, 401, 401, 429]
    # even the right password waits until the window ends: the address is locked out
    good = {"username": "alice", "password": "secret-password"}
    assert client.post("/api/v1/auth/token/", good, format="json").status_code == 429


def test_x_forwarded_for_is_ignored_without_trusted_proxies(db, settings):
    settings.AUTH_FAILURE_RATE = "2/min"
    codes = [
        APIClient(REMOTE_ADDR="10.3.3.3")
        .get("/api/v1/models/", HTTP_X_API_KEY="bad", HTTP_X_FORWARDED_FOR=f"192.0.2.{i}")
        .status_code
        for i in range(3)
    ]
    assert codes == [401, 401, 429]


def test_failed_refresh_and_verify_calls_count_too(db, settings):
    settings.AUTH_FAILURE_RATE = "2/min"
    client = APIClient(REMOTE_ADDR="10.4.4.4")
    codes = [
        client.post("/api/v1/auth/token/refresh/", {"refresh": "forged"}, format="json").status_code,
        client.post("/api/v1/auth/token/verify/", {"token": "forged"}, format="json").status_code,
        client.post("/api/v1/auth/token/verify/", {"token": "forged"}, format="json").status_code,
    ]
    assert codes == [401, 401, 429]
