"""Submitting, running and reading batch jobs through the API (the worker task is called in-process)."""

import base64

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.inference.models import Prediction
from apps.jobs.models import BatchJob, JobItem
from apps.jobs.services import job_run
from tests.jobs.conftest import make_tar, make_zip, photo

pytestmark = pytest.mark.django_db

URL = "/api/v1/jobs/"


def upload(name: str, data: bytes, content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def submit_files(client, model, files, **fields):
    return client.post(URL, {"model": model, "inputs": files, **fields}, format="multipart")


def test_a_multipart_job_runs_to_one_result_and_one_audit_row_per_item(key_client, demo_version):
    client = key_client()
    files = [
        upload(f"{name}.jpg", photo(name)) for name in ("coffee", "chelsea", "rocket", "astronaut", "coffee")
    ]
    response = submit_files(client, "effnet", files, top_k=3)
    assert response.status_code == 202, response.content
    job = response.json()
    assert response["Location"] == f"/api/v1/jobs/{job['id']}/"
    assert (job["status"], job["model"], job["version"], job["alias"]) == (
        "queued",
        "effnet",
        1,
        "production",
    )
    assert job["progress"]["total"] == 5

    assert job_run(job_id=job["id"]) == "succeeded"

    detail = client.get(job["url"]).json()
    assert detail["status"] == "succeeded"
    assert detail["progress"] == {
        **detail["progress"],
        "done": 5,
        "succeeded": 5,
        "failed": 0,
        "percent": 100.0,
    }
    assert detail["duration_seconds"] is not None
    results = client.get(job["results_url"]).json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert results[0]["filename"] == "coffee.jpg"
    assert results[0]["output"]["top_k"][0]["label"] == "espresso"
    assert len(results[0]["output"]["top_k"]) == 3
    rows = Prediction.objects.filter(source="job").order_by("job_item__index")
    assert rows.count() == 5
    assert {r.input_meta["job"] for r in rows} == {job["id"]}
    assert rows[0].output["top_k"][0]["label"] == "espresso"
    assert all(r.api_key_id == client.api_key.pk for r in rows)


def test_json_base64_images_and_an_archive_are_accepted(key_client, tiny_version):
    client = key_client()
    images = [base64.b64encode(photo("coffee")).decode()] * 3
    response = client.post(URL, {"model": "tiny", "images": images}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["progress"]["total"] == 3

    archive = make_zip({"a/one.jpg": photo("coffee"), "two.jpg": photo("rocket"), "__MACOSX/._two.jpg": b"x"})
    response = client.post(
        URL,
        {"model": "tiny", "archive": [upload("photos.zip", archive, "application/zip")]},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    assert list(JobItem.objects.filter(job_id=job_id).values_list("filename", flat=True)) == [
        "a/one.jpg",
        "two.jpg",
    ]

    tarball = make_tar({"x.jpg": photo("chelsea"), "y.jpg": photo("coffee")})
    response = client.post(
        URL, {"model": "tiny", "archive": [upload("p.tar.gz", tarball)]}, format="multipart"
    )
    assert response.status_code == 202, response.content
    assert job_run(job_id=response.json()["id"]) == "succeeded"


def test_tensor_jobs_run_each_item(key_client, tensor_version):
    client = key_client()
    item = {"x": [[1.0, 2.0, 3.0, 4.0]], "n": [7]}
    body = {"model": "doubler", "inputs": [item, {**item, "n": [1]}, {"wrong": [[1.0]]}]}
    response = client.post(URL, body, format="json")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    assert job_run(job_id=job_id) == "succeeded"
    results = client.get(f"{URL}{job_id}/results/").json()["results"]
    assert results[0]["output"]["outputs"]["y"]["data"] == [[2.0, 4.0, 6.0, 8.0]]
    assert results[1]["output"]["outputs"]["count"]["data"] == [2]
    assert results[2]["status"] == "failed"
    assert results[2]["error"]["code"]
    assert client.get(f"{URL}{job_id}/").json()["progress"]["failed"] == 1


def test_non_image_files_fail_their_items_not_the_job(key_client, tiny_version):
    client = key_client()
    files = [
        upload("ok.jpg", photo("coffee")),
        upload("notes.txt", b"hello", "text/plain"),
        upload("cut.jpg", photo("coffee")[:500]),
    ]
    job_id = submit_files(client, "tiny", files).json()["id"]
    assert job_run(job_id=job_id) == "succeeded"
    job = client.get(f"{URL}{job_id}/").json()
    assert (job["status"], job["progress"]["failed"], job["progress"]["succeeded"]) == ("succeeded", 2, 1)
    failed = client.get(f"{URL}{job_id}/results/?status=failed").json()["results"]
    assert [(r["index"], r["error"]["code"]) for r in failed] == [(1, "invalid_image"), (2, "invalid_image")]
    assert Prediction.objects.filter(source="job", status="failed").count() == 2


def test_results_stream_as_json_lines_and_csv(key_client, tiny_version):
    import csv
    import io
    import json

    client = key_client()
    job_id = submit_files(client, "tiny", [upload(f"{i}.jpg", photo("coffee")) for i in range(6)]).json()[
        "id"
    ]
    job_run(job_id=job_id)
    response = client.get(f"{URL}{job_id}/results/?download=jsonl")
    assert response["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [line["index"] for line in lines] == list(range(6))
    response = client.get(f"{URL}{job_id}/results/?download=csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 6 and rows[0]["label"] in {"a", "b", "c"}


def test_results_are_cursor_paginated(key_client, tiny_version):
    client = key_client()
    job_id = submit_files(client, "tiny", [upload(f"{i}.jpg", photo("coffee")) for i in range(5)]).json()[
        "id"
    ]
    job_run(job_id=job_id)
    page = client.get(f"{URL}{job_id}/results/?limit=2").json()
    seen = [r["index"] for r in page["results"]]
    while page["next"]:
        page = client.get(page["next"]).json()
        seen += [r["index"] for r in page["results"]]
    assert seen == [0, 1, 2, 3, 4]


def test_list_shows_only_the_callers_jobs_with_filters(key_client, tiny_version, other_user):
    client = key_client()
    job_id = submit_files(client, "tiny", [upload("a.jpg", photo("coffee"))]).json()["id"]
    assert [j["id"] for j in client.get(URL).json()["results"]] == [job_id]
    assert client.get(f"{URL}?status=succeeded").json()["results"] == []
    assert [j["id"] for j in client.get(f"{URL}?status=queued&model=tiny").json()["results"]] == [job_id]
    other = key_client(owner=other_user)
    assert other.get(URL).json()["results"] == []


def test_another_users_job_is_not_found(key_client, tiny_version, other_user):
    job_id = submit_files(key_client(), "tiny", [upload("a.jpg", photo("coffee"))]).json()["id"]
    other = key_client(owner=other_user)
    for method, path in [
        ("get", ""),
        ("get", "results/"),
        ("post", "cancel/"),
        ("delete", ""),
        ("get", "webhooks/"),
    ]:
        response = getattr(other, method)(f"{URL}{job_id}/{path}")
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "job_not_found"


def test_cancelling_a_queued_job_is_immediate_and_a_finished_one_is_409(key_client, tiny_version):
    client = key_client()
    job_id = submit_files(client, "tiny", [upload("a.jpg", photo("coffee"))]).json()["id"]
    response = client.post(f"{URL}{job_id}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert job_run(job_id=job_id) == "not_claimed"
    response = client.post(f"{URL}{job_id}/cancel/")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "job_finished"


def test_delete_removes_inputs_and_keeps_audit_rows(key_client, tiny_version, model_store_root):
    client = key_client()
    job_id = submit_files(client, "tiny", [upload("a.jpg", photo("coffee"))] * 2).json()["id"]
    assert client.delete(f"{URL}{job_id}/").json()["error"]["code"] == "job_active"
    stored = list((model_store_root / "jobs" / job_id).iterdir())
    assert len(stored) == 2
    job_run(job_id=job_id)
    assert client.delete(f"{URL}{job_id}/").status_code == 204
    assert not (model_store_root / "jobs" / job_id).exists()  # the folder too
    assert client.get(f"{URL}{job_id}/").status_code == 404
    assert Prediction.objects.filter(source="job").count() == 2


def test_a_key_without_the_jobs_scope_is_refused(key_client, tiny_version):
    client = key_client(scopes=["predict"])
    response = submit_files(client, "tiny", [upload("a.jpg", photo("coffee"))])
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scope_missing"


def test_a_job_spends_quota_for_every_item(key_client, tiny_version, settings):
    from apps.accounts.services.quota import usage_for

    settings.MONTHLY_PREDICTION_QUOTA = 3
    client = key_client()
    assert submit_files(client, "tiny", [upload("a.jpg", photo("coffee"))] * 2).status_code == 202
    response = submit_files(client, "tiny", [upload("a.jpg", photo("coffee"))] * 2)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert BatchJob.objects.count() == 1
    assert usage_for(client.api_key.owner)["predictions_used"] == 2


def test_a_job_stays_its_owners_after_the_grant_and_the_model_are_gone(client_for, user, other_user):
    from apps.registry.models import MLModel, ModelGrant
    from tests.factories import MLModelFactory

    model = MLModelFactory(name="bobs", owner=other_user)
    grant = ModelGrant.objects.create(model=model, user=user, role="consumer")
    job = BatchJob.objects.create(owner=user, model_name="bobs", version_number=1, kind="image")
    grant.delete()
    MLModel.objects.filter(pk=model.pk).delete()
    client = client_for(user)
    assert [j["id"] for j in client.get(URL).json()["results"]] == [str(job.id)]
    assert client.get(f"{URL}{job.id}/").status_code == 200


def test_a_models_owner_does_not_see_other_users_jobs_on_it(client_for, user, other_user, staff_user):
    from tests.factories import MLModelFactory

    MLModelFactory(name="mine", owner=user, visibility="internal")
    job = BatchJob.objects.create(owner=other_user, model_name="mine", version_number=1, kind="image")
    response = client_for(user).get(f"{URL}{job.id}/")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "job_not_found")
    assert client_for(user).get(URL).json()["results"] == []
    assert client_for(staff_user).get(f"{URL}{job.id}/").status_code == 200
