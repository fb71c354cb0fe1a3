"""The IETF RateLimit-Policy / RateLimit headers (structured fields) next to the legacy ones, on
every response of a throttled scope, 429 included."""

import re
import uuid

import pytest

from apps.accounts.ratelimit import Rate, hit
from apps.accounts.ratelimit_headers import ratelimit_headers, sf_string

pytestmark = pytest.mark.django_db

# One list member of RFC 9651: an sf-string with integer parameters ("name";a=1;b=2).
MEMBER = re.compile(r'^"((?:[^"\\]|\\["\\])*)"((?:;[a-z*][a-z0-9_.*-]*=-?\d{1,15})*)$')


def parse_member(value: str) -> tuple[str, dict[str, int]]:
    match = MEMBER.match(value)
    assert match, f"not a structured-field item with integer parameters: {value!r}"
    params = dict(p.split("=") for p in match.group(2).split(";")[1:])
    return match.group(1), {key: int(number) for key, number in params.items()}


def write(client, n: int):
    return [client.post("/api/v1/models/", {"name": f"rl-{i}"}, format="json") for i in range(n)]


def test_a_throttled_scope_answers_with_both_kinds_of_headers(api, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "registry_write": "3/min"}

    responses = write(api, 4)

    assert [r.status_code for r in responses] == [201, 201, 201, 429]
    for number, response in enumerate(responses[:3], start=1):
        assert parse_member(response["RateLimit-Policy"]) == ("registry_write", {"q": 3, "w": 60})
        name, current = parse_member(response["RateLimit"])
        assert (name, current["r"]) == ("registry_write", 3 - number)
        assert 0 <= current["t"] <= 60
        assert response["X-RateLimit-Remaining"] == str(3 - number)
    refused = responses[-1]
    assert parse_member(refused["RateLimit-Policy"]) == ("registry_write", {"q": 3, "w": 60})
    name, current = parse_member(refused["RateLimit"])
    assert (name, current["r"]) == ("registry_write", 0)
    # The window ends when Retry-After says (both rounded up to whole seconds).
    assert abs(current["t"] - int(refused["Retry-After"])) <= 1
    assert refused["X-RateLimit-Limit"] == "3"


def test_the_policy_is_the_keys_own_rate_when_that_is_tighter(key_client, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "registry_write": "100/min"}
    client = key_client(rate_limit_per_minute=2)

    responses = write(client, 3)

    assert [r.status_code for r in responses] == [201, 201, 429]
    assert parse_member(responses[0]["RateLimit-Policy"]) == ("registry_write", {"q": 2, "w": 60})
    assert parse_member(responses[2]["RateLimit"])[1]["r"] == 0


def test_an_unthrottled_read_has_no_rate_limit_headers(api):
    response = api.get("/api/v1/models/")

    assert response.status_code == 200
    assert not {"RateLimit", "RateLimit-Policy", "X-RateLimit-Limit"} & set(response.headers)


def test_the_headers_follow_the_draft_syntax():
    verdict = hit(f"draft-syntax-{uuid.uuid4()}", Rate(100, 3600), cost=58, now=1_800_003_582.5)

    headers = ratelimit_headers(verdict, policy="default")

    assert headers["RateLimit-Policy"] == '"default";q=100;w=3600'
    assert headers["RateLimit"] == '"default";r=42;t=18'
    assert (headers["X-RateLimit-Limit"], headers["X-RateLimit-Reset"]) == ("100", "1800003600")


def test_a_policy_name_is_escaped_as_a_structured_field_string():
    assert sf_string('a"b\\c') == '"a\\"b\\\\c"'
    assert parse_member(sf_string('a"b\\c') + ";q=1") == ('a\\"b\\\\c', {"q": 1})
