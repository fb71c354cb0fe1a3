"""Idempotency-Key per draft-ietf-httpapi-idempotency-key-header: a quoted structured-field
String, today's unquoted keys taken as the same key, 422 for a key reused with another
payload, 409 while the key's first request is still being processed."""

import pytest

from apps.jobs import idempotency
from apps.jobs.models import BatchJob

pytestmark = pytest.mark.django_db

URL = "/api/v1/jobs/"
BODY = {"model": "tiny", "images": ["aGVsbG8="]}


def submit(client, key: str, body: dict | None = None):
    return client.post(URL, body or BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ('"order-42"', "order-42"),
        ("order-42", "order-42"),
        ('  "order-42"\t', "order-42"),
        ('"say \\"hi\\" \\\\ bye"', 'say "hi" \\ bye'),
        ('""', ""),
        ("", ""),
    ],
)
def test_a_key_is_read_quoted_or_as_before(value, key):
    assert idempotency.parse_idempotency_key(value) == key


def test_the_quoted_and_the_unquoted_key_find_the_same_job(api, tiny_version, enqueued):
    first = submit(api, '"order-42"')
    again = submit(api, "order-42")

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    assert BatchJob.objects.get().idempotency_key == "order-42"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param('"order-42', id="no-closing-quote"),
        pytest.param('"order"-42', id="text-after-the-quote"),
        pytest.param('"order-42";v=1', id="parameters"),
        pytest.param('"bad \\n escape"', id="unknown-escape"),
        pytest.param('"caf\u00e9"', id="not-ascii"),
        pytest.param('"' + "k" * 256 + '"', id="too-long"),
    ],
)
def test_a_malformed_key_is_refused(api, tiny_version, enqueued, value):
    response = submit(api, value)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_idempotency_key"
    assert 'Idempotency-Key: "<key>"' in error["message"]
    assert not BatchJob.objects.exists()


def test_a_key_reused_with_another_payload_is_422(api, tiny_version, enqueued):
    assert submit(api, '"k-1"').status_code == 202

    response = submit(api, '"k-1"', {"model": "tiny", "images": ["aGVsbG8h"]})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert BatchJob.objects.count() == 1


def test_a_key_whose_first_request_is_in_flight_is_409(api, user, tiny_version, enqueued):
    with idempotency.in_flight(user_id=user.pk, key="k-2"):  # as the first request holds it
        response = submit(api, '"k-2"')

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_in_use"
    assert not BatchJob.objects.exists()
    assert submit(api, '"k-2"').status_code == 202  # released once the first is done


def test_another_users_key_in_flight_is_not_ours(api, other_user, tiny_version, enqueued):
    with idempotency.in_flight(user_id=other_user.pk, key="k-3"):
        assert submit(api, '"k-3"').status_code == 202


def test_the_mark_is_released_when_the_request_fails(api, user, tiny_version, enqueued):
    response = submit(api, '"k-4"', {"model": "no-such-model", "images": ["aGVsbG8="]})

    assert response.status_code == 404
    assert submit(api, '"k-4"').status_code == 202


def test_a_predict_that_becomes_a_job_reads_the_quoted_key(api, tiny_version, enqueued):
    url = "/api/v1/models/tiny/predict"
    headers = {"HTTP_PREFER": "respond-async"}
    first = api.post(url, {"images": ["aGVsbG8="]}, format="json", HTTP_IDEMPOTENCY_KEY='"p-1"', **headers)
    again = api.post(url, {"images": ["aGVsbG8="]}, format="json", HTTP_IDEMPOTENCY_KEY="p-1", **headers)

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
