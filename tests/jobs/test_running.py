"""The worker side: claim, lease, resume, exactly one result per item, cancellation, the reconciler."""

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from apps.inference.models import Prediction
from apps.jobs.models import BatchJob, JobItem
from apps.jobs.services import job_run, lifecycle, reconcile_jobs
from apps.jobs.services import running as running_module
from tests.jobs.conftest import photo

pytestmark = pytest.mark.django_db

URL = "/api/v1/jobs/"


def submit(client, count: int, model: str = "tiny") -> str:
    from django.core.files.uploadedfile import SimpleUploadedFile

    files = [SimpleUploadedFile(f"{i}.jpg", photo("coffee"), content_type="image/jpeg") for i in range(count)]
    response = client.post(URL, {"model": model, "inputs": files}, format="multipart")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def assert_exactly_one_result_per_item(job_id: str, total: int) -> None:
    items = JobItem.objects.filter(job_id=job_id)
    assert items.count() == total
    assert not items.filter(status="pending").exists()
    assert Prediction.objects.filter(job_item__job_id=job_id).count() == total
    assert Prediction.objects.filter(input_meta__job=job_id).count() == total


def test_a_job_claimed_by_one_worker_is_not_run_by_another(api, tiny_version):
    job_id = submit(api, 2)
    assert lifecycle.job_claim(job_id, "w1") is not None
    assert job_run(job_id=job_id, worker="w2") == "not_claimed"
    assert BatchJob.objects.get(pk=job_id).worker == "w1"


def test_a_job_whose_worker_died_resumes_with_the_items_not_yet_done(api, tiny_version, settings, enqueued):
    """A first worker did one batch and died; the next attempt does the rest, none twice."""
    settings.JOB_BATCH_SIZE = 4
    job_id = submit(api, 10)
    original = running_module._compute
    calls = []

    def dies_on_second_batch(job, version, items):
        calls.append([i.index for i in items])
        if len(calls) == 2:
            raise SystemExit("worker killed")  # not an Exception: like a killed process, nothing is cleaned
        return original(job, version, items)

    running_module._compute = dies_on_second_batch
    try:
        with pytest.raises(SystemExit):
            job_run(job_id=job_id, worker="w1")
    finally:
        running_module._compute = original
    job = BatchJob.objects.get(pk=job_id)
    assert job.status == "running"
    assert JobItem.objects.filter(job_id=job_id, status="succeeded").count() == 4
    # The crashed attempt gave its lease back, so the reconciler hands it on at its next pass.
    assert job.lease_expires_at <= timezone.now()
    settings.JOB_QUEUED_GRACE_SECONDS = 0
    assert reconcile_jobs()["enqueued"] == [job_id]
    assert job_run(job_id=job_id, worker="w2") == "succeeded"
    assert_exactly_one_result_per_item(job_id, 10)
    job = BatchJob.objects.get(pk=job_id)
    assert (job.done, job.failed_items, job.attempts) == (10, 0, 2)


def test_a_worker_that_lost_its_lease_writes_nothing(api, tiny_version):
    job_id = submit(api, 3)
    original = running_module._compute

    def taken_over(job, version, items):
        # While this worker computes, its lease expires and another worker takes the job.
        BatchJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
        assert lifecycle.job_claim(str(job.pk), "w2") is not None
        return original(job, version, items)

    running_module._compute = taken_over
    try:
        assert job_run(job_id=job_id, worker="w1") == "lease_lost"
    finally:
        running_module._compute = original
    assert not JobItem.objects.filter(job_id=job_id).exclude(status="pending").exists()
    assert not Prediction.objects.filter(source="job").exists()


def test_an_audit_row_cannot_be_written_twice_for_an_item(api, tiny_version):
    from django.db import IntegrityError, transaction

    job_id = submit(api, 1)
    job_run(job_id=job_id)
    item = JobItem.objects.get(job_id=job_id)
    row = Prediction.objects.get(job_item=item)
    row.pk = None
    with pytest.raises(IntegrityError), transaction.atomic():
        row.save()


def test_a_poison_job_ends_failed_after_the_attempts_cap(api, tiny_version, settings, enqueued):
    settings.JOB_MAX_ATTEMPTS = 2
    settings.JOB_QUEUED_GRACE_SECONDS = 0
    job_id = submit(api, 2)
    original = running_module._compute

    def crashes(*args):
        raise RuntimeError("segfault-like crash")

    running_module._compute = crashes
    try:
        for _ in range(2):
            with pytest.raises(RuntimeError):
                job_run(job_id=job_id)
            reconcile_jobs()
    finally:
        running_module._compute = original
    job = BatchJob.objects.get(pk=job_id)
    assert job.status == "failed"
    assert job.error_code == "attempts_exhausted"
    assert job.finished_at is not None


def test_cancelling_a_running_job_stops_it_after_the_batch_in_hand(api, tiny_version, settings):
    settings.JOB_BATCH_SIZE = 2
    job_id = submit(api, 8)
    original = running_module._compute
    batches = []

    def cancel_during_second_batch(job, version, items):
        batches.append(len(items))
        if len(batches) == 2:
            response = api.post(f"{URL}{job_id}/cancel/")
            assert response.status_code == 202
            assert response.json()["cancel_requested"] is True
        return original(job, version, items)

    running_module._compute = cancel_during_second_batch
    try:
        assert job_run(job_id=job_id) == "cancelled"
    finally:
        running_module._compute = original
    job = BatchJob.objects.get(pk=job_id)
    assert job.status == "cancelled"
    assert batches == [2, 2]
    assert job.done == 4
    done = JobItem.objects.filter(job_id=job_id, status="succeeded")
    assert list(done.values_list("index", flat=True)) == [0, 1, 2, 3]
    assert Prediction.objects.filter(job_item__job_id=job_id).count() == 4


def test_the_reconciler_enqueues_jobs_queued_too_long_and_running_under_an_expired_lease(
    api, tiny_version, settings, enqueued
):
    fresh = submit(api, 1)
    stale = submit(api, 1)
    dead = submit(api, 1)
    alive = submit(api, 1)
    past = timezone.now() - dt.timedelta(seconds=settings.JOB_QUEUED_GRACE_SECONDS + 5)
    BatchJob.objects.filter(pk__in=[stale, dead, alive]).update(enqueued_at=past)
    lifecycle.job_claim(dead, "w-dead")
    lifecycle.job_claim(alive, "w-alive")
    BatchJob.objects.filter(pk=dead).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))

    report = reconcile_jobs()
    assert sorted(report["enqueued"]) == sorted([stale, dead])
    assert sorted(enqueued) == sorted([stale, dead])
    assert fresh not in enqueued and alive not in enqueued
    # Enqueued again at most once per grace period.
    assert reconcile_jobs()["enqueued"] == []


def test_a_cancel_asked_of_a_job_whose_worker_died_is_settled_by_the_reconciler(api, tiny_version):
    job_id = submit(api, 2)
    lifecycle.job_claim(job_id, "w-dead")
    api.post(f"{URL}{job_id}/cancel/")
    BatchJob.objects.filter(pk=job_id).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
    BatchJob.objects.filter(pk=job_id).update(enqueued_at=timezone.now() - dt.timedelta(minutes=5))
    assert reconcile_jobs()["settled"] == [job_id]
    assert BatchJob.objects.get(pk=job_id).status == "cancelled"


def test_progress_reports_speed_and_eta(api, tiny_version, settings):
    settings.JOB_BATCH_SIZE = 2
    job_id = submit(api, 6)
    seen = []
    original = running_module._compute

    def observe(job, version, items):
        seen.append(api.get(f"{URL}{job_id}/").json()["progress"])
        return original(job, version, items)

    running_module._compute = observe
    try:
        job_run(job_id=job_id)
    finally:
        running_module._compute = original
    assert [p["done"] for p in seen] == [0, 2, 4]
    assert seen[1]["items_per_second"] > 0
    assert seen[1]["eta_seconds"] is not None


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs a server database; CI runs it on PostgreSQL"
)
@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_for_one_job_run_it_once(api, tiny_version, enqueued):
    job_id = submit(api, 6)
    outcomes = []
    barrier = threading.Barrier(2)

    def worker(name):
        barrier.wait()
        try:
            outcomes.append(job_run(job_id=job_id, worker=name))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["not_claimed", "succeeded"]
    assert_exactly_one_result_per_item(job_id, 6)


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs a server database; CI runs it on PostgreSQL"
)
@pytest.mark.django_db(transaction=True)
def test_the_same_idempotency_key_at_the_same_moment_makes_one_job(key_client, tiny_version, enqueued):
    from rest_framework.test import APIClient

    key = key_client().key
    barrier = threading.Barrier(4)
    statuses = []

    def send():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}", HTTP_IDEMPOTENCY_KEY="at-once")
        barrier.wait()
        try:
            response = client.post(URL, {"model": "tiny", "images": ["aGVsbG8="]}, format="json")
            answer = response.json()
            statuses.append((response.status_code, answer.get("id") or answer["error"]["code"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # One creates the job; the others answer with it (200) or, while the first is still being
    # processed, 409 idempotency_key_in_use (the draft's answer to a concurrent request).
    codes = [code for code, _ in statuses]
    assert codes.count(202) == 1 and set(codes) <= {200, 202, 409}, statuses
    job = BatchJob.objects.get()
    assert {found for code, found in statuses if code != 409} == {str(job.id)}
    assert {found for code, found in statuses if code == 409} <= {"idempotency_key_in_use"}


def test_retrying_a_job_gives_failed_items_a_new_result_and_keeps_the_old_audit_rows(
    api, tiny_version, enqueued, django_capture_on_commit_callbacks
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from apps.jobs.services import job_retry

    files = [
        SimpleUploadedFile("ok.jpg", photo("coffee"), content_type="image/jpeg"),
        SimpleUploadedFile("bad.jpg", b"not an image", content_type="image/jpeg"),
    ]
    job_id = api.post(URL, {"model": "tiny", "inputs": files}, format="multipart").json()["id"]
    job_run(job_id=job_id)
    bad = JobItem.objects.get(job_id=job_id, index=1)
    # Pretend the bad input was repaired in storage (the retry re-reads it).
    from apps.registry.storage import model_store

    with model_store.open(bad.input_name, "wb") as stored:
        stored.write(photo("coffee"))
    with django_capture_on_commit_callbacks(execute=True):
        job_retry(job=BatchJob.objects.get(pk=job_id))
    assert enqueued == [job_id]
    assert job_run(job_id=job_id) == "succeeded"
    assert JobItem.objects.get(pk=bad.pk).status == "succeeded"
    rows = Prediction.objects.filter(input_meta__job=job_id)
    assert rows.count() == 3  # ok, bad (failed, unlinked), bad (succeeded)
    assert rows.filter(status="failed", job_item__isnull=True).count() == 1


def test_the_reconciler_sends_a_webhook_whose_message_was_lost(api, tiny_version, settings, monkeypatch):
    sent = []
    monkeypatch.setattr(lifecycle, "enqueue_webhook", lambda job_id, attempt=1: sent.append(str(job_id)))
    body = {"model": "tiny", "images": ["aGVsbG8="], "webhook_url": "http://127.0.0.1:9/hook"}
    job_id = api.post(URL, body, format="json").json()["id"]
    job_run(job_id=job_id)  # its on-commit enqueue of the webhook never runs here: as if lost
    BatchJob.objects.filter(pk=job_id).update(finished_at=timezone.now() - dt.timedelta(minutes=5))
    assert reconcile_jobs()["webhooks"] == [job_id]
    assert sent == [job_id]


def test_a_backlog_in_the_broker_is_not_mistaken_for_lost_messages(
    api, tiny_version, settings, enqueued, monkeypatch
):
    from apps.core import metrics

    settings.JOB_QUEUED_GRACE_SECONDS = 0
    first, second = submit(api, 1), submit(api, 1)
    monkeypatch.setattr(metrics, "broker_queue_depths", lambda url, queues: [2])
    assert reconcile_jobs()["enqueued"] == []  # two messages wait for two queued jobs
    monkeypatch.setattr(metrics, "broker_queue_depths", lambda url, queues: [1])
    assert sorted(reconcile_jobs()["enqueued"]) == sorted([first, second])  # one was lost


def test_the_reconciler_resends_a_webhook_retry_whose_message_was_lost(
    api, tiny_version, settings, monkeypatch
):
    from apps.jobs.models import WebhookDelivery

    sent = []
    monkeypatch.setattr(
        lifecycle, "enqueue_webhook", lambda job_id, attempt=1: sent.append((str(job_id), attempt))
    )
    body = {"model": "tiny", "images": ["aGVsbG8="], "webhook_url": "http://127.0.0.1:9/hook"}
    job_id = api.post(URL, body, format="json").json()["id"]
    job_run(job_id=job_id)
    long_ago = timezone.now() - dt.timedelta(hours=2)
    BatchJob.objects.filter(pk=job_id).update(finished_at=long_ago)
    failed = WebhookDelivery.objects.create(
        job_id=job_id, attempt=1, url=body["webhook_url"], status_code=500
    )
    WebhookDelivery.objects.filter(pk=failed.pk).update(created_at=timezone.now())  # its retry is not due yet
    assert reconcile_jobs()["webhooks"] == []
    WebhookDelivery.objects.filter(pk=failed.pk).update(
        created_at=long_ago
    )  # long overdue: the message was lost
    assert reconcile_jobs()["webhooks"] == [job_id]
    assert sent == [(job_id, 2)]
    WebhookDelivery.objects.create(
        job_id=job_id, attempt=2, url=body["webhook_url"], status_code=204, succeeded=True
    )
    sent.clear()
    assert reconcile_jobs()["webhooks"] == [] and sent == []


def test_a_second_copy_of_a_webhook_attempt_does_nothing(api, tiny_version, monkeypatch):
    from apps.jobs import webhooks
    from apps.jobs.models import WebhookDelivery
    from workers.jobs import deliver_job_webhook

    calls = []
    monkeypatch.setattr(
        webhooks,
        "deliver",
        lambda *, job, payload, attempt: (
            calls.append(attempt)
            or WebhookDelivery.objects.create(job=job, attempt=attempt, url=job.webhook_url, succeeded=True)
        ),
    )
    body = {"model": "tiny", "images": ["aGVsbG8="], "webhook_url": "http://127.0.0.1:9/hook"}
    job_id = api.post(URL, body, format="json").json()["id"]
    job_run(job_id=job_id)
    deliver_job_webhook(job_id, 1)
    deliver_job_webhook(job_id, 1)  # the reconciler's copy, or a redelivered message
    assert calls == [1]


def test_the_lease_heartbeat_logs_with_the_jobs_request_id(settings, monkeypatch, log_records):
    from apps.core.middleware import request_id_var
    from apps.jobs.services.leasing import JobLease

    settings.JOB_HEARTBEAT_SECONDS = 0.01
    failed = threading.Event()

    class Broken:
        def renew(self, lease):
            failed.set()
            raise RuntimeError("the database blinked")

    monkeypatch.setattr("apps.jobs.services.leasing.JOB_CLAIM", Broken())
    token = request_id_var.set("submit-req-2")
    try:
        lease = JobLease("00000000-0000-0000-0000-000000000000", "t")
    finally:
        request_id_var.reset(token)
    assert failed.wait(5)
    lease.stop()
    renewals = [r for r in log_records if r.getMessage().startswith("Lease renewal")]
    assert renewals
    assert {r.request_id for r in renewals} == {"submit-req-2"}
