"""Standard Webhooks signing, checked with the stock `standardwebhooks` verifier; secret rotation
with its overlap window; the legacy header through the switch; the data migration of old secrets."""

import base64
import importlib
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.utils import timezone
from standardwebhooks import Webhook, WebhookVerificationError

from apps.jobs import webhook_signing
from apps.jobs.models import WebhookSecret
from apps.jobs.webhooks import deliver, rotate_secret, secret_for
from tests.jobs.test_webhooks import PAYLOAD, make_job, receiver  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

URL = "/api/v1/me/webhook-secret/"


def delivered(receiver, job, attempt: int = 1):  # noqa: F811
    count = len(receiver.requests)
    deliver(job=job, payload=PAYLOAD, attempt=attempt)
    assert len(receiver.requests) == count + 1
    request = receiver.requests[-1]
    return request, {name.lower(): value for name, value in request.headers.items()}


def test_a_delivery_verifies_with_the_standard_webhooks_library(receiver, make_job, user):  # noqa: F811
    request, headers = delivered(receiver, make_job(receiver.url))

    secret = secret_for(user).secret
    assert Webhook(secret).verify(request.body, headers) == PAYLOAD
    assert headers["webhook-id"] and headers["webhook-signature"].startswith("v1,")
    with pytest.raises(WebhookVerificationError):
        Webhook(webhook_signing.new_secret()).verify(request.body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(request.body.replace(b"abc", b"abd"), headers)


def test_the_webhook_id_is_the_same_on_every_retry_of_a_delivery(receiver, make_job, user):  # noqa: F811
    receiver.status = 500
    job = make_job(receiver.url)
    _, first = delivered(receiver, job, attempt=1)
    receiver.status = 204
    _, second = delivered(receiver, job, attempt=2)
    _, other = delivered(receiver, make_job(receiver.url), attempt=1)

    assert first["webhook-id"] == second["webhook-id"] == f"msg_{job.id.hex}"
    assert other["webhook-id"] != first["webhook-id"]


def test_during_the_overlap_both_secrets_sign(receiver, make_job, user):  # noqa: F811
    old = secret_for(user).secret
    new = rotate_secret(user, overlap_seconds=3600).secret

    request, headers = delivered(receiver, make_job(receiver.url))

    assert new != old
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new).verify(request.body, headers) == PAYLOAD
    assert Webhook(old).verify(request.body, headers) == PAYLOAD
    legacy = request.headers["X-MLPlatform-Signature"]
    for secret in (old, new):
        legacy_key = webhook_signing.legacy_secret(secret)
        assert webhook_signing.verify_legacy_signature(secret=legacy_key, header=legacy, body=request.body)


def test_after_the_overlap_only_the_new_secret_signs(receiver, make_job, user):  # noqa: F811
    old = secret_for(user).secret
    new = rotate_secret(user, overlap_seconds=3600).secret
    WebhookSecret.objects.filter(user=user).update(previous_valid_until=timezone.now() - timedelta(seconds=1))

    request, headers = delivered(receiver, make_job(receiver.url))

    assert len(headers["webhook-signature"].split(" ")) == 1
    assert Webhook(new).verify(request.body, headers) == PAYLOAD
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(request.body, headers)


def test_an_overlap_of_zero_drops_the_old_secret_at_once(receiver, make_job, user):  # noqa: F811
    old = secret_for(user).secret
    rotated = rotate_secret(user, overlap_seconds=0)

    request, headers = delivered(receiver, make_job(receiver.url))

    assert (rotated.previous_secret, rotated.previous_valid_until) == ("", None)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(request.body, headers)


def test_a_second_rotation_keeps_two_secrets_at_most(user):
    first = secret_for(user).secret
    second = rotate_secret(user, overlap_seconds=3600).secret
    third = rotate_secret(user, overlap_seconds=3600)

    assert third.signing_secrets(timezone.now()) == [third.secret, second]
    assert first not in third.signing_secrets(timezone.now())


def test_the_legacy_headers_can_be_turned_off(receiver, make_job, settings):  # noqa: F811
    settings.WEBHOOK_LEGACY_SIGNATURE = False

    _, headers = delivered(receiver, make_job(receiver.url))

    assert "webhook-signature" in headers
    assert not {"x-mlplatform-signature", "x-mlplatform-delivery", "x-mlplatform-event"} & set(headers)


# --- The API ---------------------------------------------------------------------------------------


def test_the_secret_is_shown_in_both_forms(client_for, user):
    body = client_for(user).get(URL).json()

    assert body["secret"].startswith("whsec_")
    assert base64.b64decode(body["secret"].removeprefix("whsec_")).decode() == body["legacy_secret"]
    assert body["previous_valid_until"] is None


def test_rotating_keeps_the_old_secret_for_the_overlap(client_for, user, settings):
    settings.WEBHOOK_SECRET_OVERLAP_SECONDS = 600
    client = client_for(user)
    old = client.get(URL).json()["secret"]

    answer = client.post(URL)

    assert answer.status_code == 200
    stored = WebhookSecret.objects.get(user=user)
    assert answer.json()["secret"] == stored.secret != old
    assert stored.previous_secret == old
    remaining = (stored.previous_valid_until - timezone.now()).total_seconds()
    assert 590 < remaining <= 600


def test_rotating_with_an_overlap_of_zero_is_immediate(client_for, user):
    answer = client_for(user).post(URL, {"overlap_seconds": 0}, format="json")

    assert answer.status_code == 200
    assert answer.json()["previous_valid_until"] is None
    assert WebhookSecret.objects.get(user=user).previous_secret == ""


@pytest.mark.parametrize("overlap", [-1, 7 * 86400 + 1, "soon"])
def test_an_overlap_out_of_range_is_refused(client_for, user, overlap):
    answer = client_for(user).post(URL, {"overlap_seconds": overlap}, format="json")

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_input"
    assert "overlap_seconds" in answer.json()["error"]["details"]


# --- The data migration ----------------------------------------------------------------------------


def test_old_secrets_are_migrated_and_receivers_keep_verifying(receiver, make_job, user):  # noqa: F811
    migration = importlib.import_module("apps.jobs.migrations.0004_webhook_secret_whsec_and_overlap")
    old = "s3cret-from-before-the-switch_0123456789abcdefgh"  # as token_urlsafe(32) made them
    WebhookSecret.objects.update_or_create(user=user, defaults={"secret": old})

    migration.to_whsec(django_apps, None)

    stored = WebhookSecret.objects.get(user=user).secret
    assert stored == "whsec_" + base64.b64encode(old.encode()).decode()
    request, headers = delivered(receiver, make_job(receiver.url))
    header = request.headers["X-MLPlatform-Signature"]
    assert webhook_signing.verify_legacy_signature(secret=old, header=header, body=request.body)
    assert Webhook(stored).verify(request.body, headers) == PAYLOAD
    migration.from_whsec(django_apps, None)
    assert WebhookSecret.objects.get(user=user).secret == old
