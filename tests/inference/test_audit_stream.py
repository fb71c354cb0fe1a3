"""AUDIT_MODE=stream in process: rows and quota through the Redis stream, copied by the writer.

Needs PostgreSQL and Redis (CI has both; the mode falls back to durable without them, which
the last tests check on any database). The writer's failure modes with real processes
are in tests/e2e/test_audit_stream_failures.py.
"""

import json
import uuid

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from apps.accounts.models import QuotaUsage
from apps.accounts.quota_counter import counter_key, redis_client
from apps.accounts.services.quota import current_period, quota_consume
from apps.auditstream.mode import effective_mode, fallback_reason
from apps.auditstream.writer import Writer, store
from apps.inference.models import Prediction
from tests.inference.conftest import photo

needs_services = pytest.mark.skipif(
    connection.vendor != "postgresql" or not django_settings.REDIS_URL,
    reason="the stream mode needs PostgreSQL and Redis (CI has both)",
)
# Transactions of their own: inside a test's transaction the sink writes durably (as a job's batch does).
pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stream(settings):
    settings.AUDIT_MODE = "stream"
    settings.AUDIT_STREAM_KEY = f"test-{uuid.uuid4().hex}:audit"
    client = redis_client()
    yield settings.AUDIT_STREAM_KEY
    for key in client.scan_iter(f"{settings.AUDIT_STREAM_KEY}*"):
        client.delete(key)


def writer(stream: str) -> Writer:
    copy = Writer(redis_client(), stream, "test", batch=100, claim_seconds=60)
    copy.ensure_group()
    return copy


def predict(client, name: str = "tiny"):
    upload = SimpleUploadedFile("a.jpg", photo("coffee"), content_type="image/jpeg")
    return client.post(f"/api/v1/models/{name}/predict", {"image": [upload]}, format="multipart")


def columns(row: Prediction) -> dict:
    """What a row records, apart from what differs between any two requests."""
    values = {f.attname: getattr(row, f.attname) for f in Prediction._meta.concrete_fields}
    for varying in ("id", "created_at", "latency_ms", "request_id"):
        values.pop(varying)
    return values


@needs_services
def test_a_prediction_waits_in_the_stream_then_lands_with_every_column_and_its_quota(
    key_client, tiny_version, stream, settings, user
):
    client = key_client()
    settings.AUDIT_MODE = "durable"
    assert predict(client).status_code == 200
    durable = Prediction.objects.get()
    settings.AUDIT_MODE = "stream"
    response = predict(client)
    assert response.status_code == 200, response.content
    assert Prediction.objects.count() == 1  # not yet: the row waits in the stream
    assert redis_client().xlen(stream) == 1
    assert int(redis_client().get(counter_key(user.pk, current_period()))) == 2  # seeded with 1, plus 1
    assert writer(stream).copy_once(block_ms=0) == 1
    copied = Prediction.objects.exclude(pk=durable.pk).get()
    assert copied.request_id == response["X-Request-ID"]
    assert columns(copied) == columns(durable)
    assert copied.created_at.microsecond == copied.created_at.microsecond  # full precision kept
    assert QuotaUsage.objects.get(user=user).used == 2
    assert redis_client().xlen(stream) == 0  # acknowledged and deleted after the commit


@needs_services
def test_copying_the_same_entries_twice_stores_and_spends_once(key_client, tiny_version, stream, user):
    client = key_client()
    for _ in range(3):
        assert predict(client).status_code == 200
    entries = redis_client().xrange(stream)
    assert len(entries) == 3
    store(entries)
    store(entries)  # as a writer killed between its commit and its acknowledgement would
    assert Prediction.objects.count() == 3
    assert QuotaUsage.objects.get(user=user).used == 3


@needs_services
def test_the_quota_is_counted_in_redis_and_refuses_past_the_limit(key_client, tiny_version, stream, settings):
    settings.MONTHLY_PREDICTION_QUOTA = 2
    client = key_client()
    assert [predict(client).status_code for _ in range(3)] == [200, 200, 429]
    refused = predict(client).json()
    assert refused["error"]["code"] == "quota_exceeded"
    assert refused["error"]["details"]["used"] == 2
    writer(stream).copy_once(block_ms=0)
    rows = Prediction.objects.order_by("id")
    assert [(r.status, r.error_code) for r in rows] == [
        ("succeeded", ""),
        ("succeeded", ""),
        ("failed", "quota_exceeded"),
        ("failed", "quota_exceeded"),
    ]


@needs_services
def test_a_spend_in_postgresql_is_mirrored_into_the_counter(key_client, tiny_version, stream, settings, user):
    settings.MONTHLY_PREDICTION_QUOTA = 3
    client = key_client()
    assert predict(client).status_code == 200  # seeds the counter
    quota_consume(user=user, amount=2)  # a job's submission spends in PostgreSQL
    assert int(redis_client().get(counter_key(user.pk, current_period()))) == 3
    assert predict(client).status_code == 429


@needs_services
def test_a_row_whose_key_was_deleted_meanwhile_lands_without_it(key_client, tiny_version, stream):
    client = key_client()
    assert predict(client).status_code == 200
    client.api_key.delete()  # before the writer copies the row: the foreign key would fail
    writer(stream).copy_once(block_ms=0)
    row = Prediction.objects.get()
    assert (row.api_key_id, row.status) == (None, "succeeded")


@needs_services
def test_redis_away_writes_the_row_durably(key_client, tiny_version, stream, settings):
    from tests.live import free_port

    client = key_client()
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{free_port()}/0"}
    }
    response = predict(client)
    assert response.status_code == 200
    assert Prediction.objects.get().request_id == response["X-Request-ID"]


def test_without_redis_the_stream_mode_falls_back_to_durable_and_says_so(settings, key_client, tiny_version):
    settings.AUDIT_MODE = "stream"
    settings.REDIS_URL = ""
    assert effective_mode() == "durable"
    assert "needs Redis" in fallback_reason()
    assert predict(key_client()).status_code == 200
    assert Prediction.objects.count() == 1


def test_an_unknown_audit_mode_fails_the_system_check(settings):
    from apps.auditstream.apps import check_audit_mode

    settings.AUDIT_MODE = "fast"
    assert [m.id for m in check_audit_mode()] == ["auditstream.E001"]
    settings.AUDIT_MODE = "stream"
    settings.REDIS_URL = ""
    assert [m.id for m in check_audit_mode()] == ["auditstream.W001"]


@needs_services
def test_the_usage_page_counts_what_waits_in_the_stream(key_client, tiny_version, stream, client_for, user):
    client = key_client()
    for _ in range(2):
        assert predict(client).status_code == 200
    assert not QuotaUsage.objects.filter(user=user, used__gt=0).exists()  # the rows have not landed
    usage = client_for(user).get("/api/v1/me/usage/")
    assert usage.status_code == 200, usage.content
    assert usage.json()["predictions_used"] == 2


@needs_services
def test_a_row_whose_user_was_deleted_meanwhile_lands_without_user_or_spend(
    key_client, tiny_version, stream, other_user
):
    from apps.registry.models import MLModel

    MLModel.objects.filter(pk=tiny_version.model_id).update(visibility=MLModel.Visibility.INTERNAL)
    client = key_client(owner=other_user)
    assert predict(client).status_code == 200
    other_user.delete()  # and their key with them, before the writer copies the row
    writer(stream).copy_once(block_ms=0)
    row = Prediction.objects.get()
    assert (row.user_id, row.api_key_id, row.status) == (None, None, "succeeded")
    assert not QuotaUsage.objects.exists()


@needs_services
def test_a_row_the_database_refuses_goes_to_the_dead_stream_and_the_rest_land(
    key_client, tiny_version, stream, user
):
    client = key_client()
    assert predict(client).status_code == 200
    assert predict(client).status_code == 200
    _, fields = redis_client().xrange(stream)[0]
    broken = json.loads(fields[b"rows"])
    broken[0].update(id=broken[0]["id"] + 10_000, model_name=None)  # NOT NULL: no fix possible
    redis_client().xadd(stream, {**fields, b"rows": json.dumps(broken)})
    assert writer(stream).copy_once(block_ms=0) == 3
    assert Prediction.objects.count() == 2
    dead = redis_client().xrange(f"{stream}:dead")
    assert [row["id"] for row in json.loads(dead[0][1][b"rows"])] == [broken[0]["id"]]
    assert QuotaUsage.objects.get(user=user).used == 2  # the refused row spent nothing
