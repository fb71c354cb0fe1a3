import datetime as dt
import os
import time
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone

from apps.inference.models import Prediction
from apps.jobs.models import BatchJob
from apps.jobs.services import job_run
from tests.jobs.conftest import photo

pytestmark = pytest.mark.django_db


def test_purge_deletes_old_finished_jobs_and_orphaned_inputs_and_keeps_audit_rows(
    api, tiny_version, model_store_root, capsys
):
    files = [SimpleUploadedFile("a.jpg", photo("coffee"), content_type="image/jpeg")]
    old = api.post("/api/v1/jobs/", {"model": "tiny", "inputs": files}, format="multipart").json()["id"]
    job_run(job_id=old)
    BatchJob.objects.filter(pk=old).update(finished_at=timezone.now() - dt.timedelta(days=10))
    queued = api.post("/api/v1/jobs/", {"model": "tiny", "inputs": files}, format="multipart").json()["id"]
    orphan = model_store_root / "jobs" / str(uuid.uuid4())
    orphan.mkdir(parents=True)
    (orphan / "000000").write_bytes(b"left behind")
    stale = time.time() - 10 * 86400
    os.utime(orphan / "000000", (stale, stale))

    call_command("purge_jobs", "--older-than", "7", "--dry-run")
    assert "Would delete 1 jobs and 1 orphaned" in capsys.readouterr().out
    call_command("purge_jobs", "--older-than", "7")
    assert list(BatchJob.objects.values_list("pk", flat=True)) == [uuid.UUID(queued)]
    assert not orphan.exists()
    assert not (model_store_root / "jobs" / old).exists()
    assert any((model_store_root / "jobs" / queued).iterdir())
    assert Prediction.objects.filter(input_meta__job=old).count() == 1


def test_more_days_than_the_calendar_holds_is_a_clear_error():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="too large"):
        call_command("purge_jobs", "--older-than", "1000000000")
