import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.jobs.models import BatchJob, JobItem
from apps.jobs.services import job_run
from tests.jobs.conftest import photo

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


def submit(api, count: int) -> str:
    files = [SimpleUploadedFile(f"{i}.jpg", photo("coffee"), content_type="image/jpeg") for i in range(count)]
    response = api.post("/api/v1/jobs/", {"model": "tiny", "inputs": files}, format="multipart")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def test_job_pages_show_progress_and_items(admin_client, api, tiny_version):
    job_id = submit(api, 3)
    job_run(job_id=job_id)
    page = admin_client.get(f"/admin/jobs/batchjob/{job_id}/change/")
    assert page.status_code == 200
    assert b"<progress" in page.content and b"3 / 3" in page.content
    assert admin_client.get("/admin/jobs/batchjob/").status_code == 200
    items = admin_client.get(f"/admin/jobs/jobitem/?job__id__exact={job_id}")
    assert items.status_code == 200 and b"0.jpg" in items.content
    assert admin_client.get("/admin/jobs/webhookdelivery/").status_code == 200


def test_cancel_and_retry_actions(admin_client, api, tiny_version, enqueued):
    queued = submit(api, 2)
    response = admin_client.post(
        "/admin/jobs/batchjob/", {"action": "cancel_jobs", "_selected_action": [queued]}, follow=True
    )
    assert response.status_code == 200
    assert BatchJob.objects.get(pk=queued).status == "cancelled"

    response = admin_client.post(
        "/admin/jobs/batchjob/", {"action": "retry_jobs", "_selected_action": [queued]}, follow=True
    )
    assert BatchJob.objects.get(pk=queued).status == "queued"
    assert job_run(job_id=queued) == "succeeded"
    assert JobItem.objects.filter(job_id=queued, status="succeeded").count() == 2

    response = admin_client.post(
        "/admin/jobs/batchjob/", {"action": "cancel_jobs", "_selected_action": [queued]}, follow=True
    )
    assert b"already succeeded" in response.content


def test_staff_without_job_permissions_cannot_read_jobs(client, api, tiny_version, db):
    from apps.accounts.models import User

    job_id = submit(api, 1)
    clerk = User.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(clerk)
    assert client.get("/admin/jobs/batchjob/").status_code == 403
    assert client.get(f"/admin/jobs/batchjob/{job_id}/change/").status_code in (302, 403)
