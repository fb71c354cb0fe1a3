"""The job page of issue 18: viewable, no Save that would answer 403."""

import pytest

from apps.jobs.services import job_run
from tests.jobs.test_admin import submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


def test_the_job_page_offers_no_save(admin_client, api, tiny_version):
    job_id = submit(api, 1)
    job_run(job_id=job_id)
    page = admin_client.get(f"/admin/jobs/batchjob/{job_id}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content and b'name="_continue"' not in page.content


def test_a_job_with_failed_items_says_so_in_the_list(admin_client, api, tiny_version):
    from apps.jobs.models import BatchJob

    job_id = submit(api, 2)
    job_run(job_id=job_id)
    BatchJob.objects.filter(pk=job_id).update(failed_items=1)
    page = admin_client.get("/admin/jobs/batchjob/").content.decode()
    assert "succeeded · 1 failed" in page and "mlp-status-partial" in page
