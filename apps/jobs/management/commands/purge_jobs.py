"""python manage.py purge_jobs --older-than DAYS [--dry-run]"""

import argparse
import datetime as dt
import uuid

from django.core.management.base import BaseCommand, CommandError

from apps.core.commands import days_from_now
from apps.jobs.models import BatchJob
from apps.jobs.services import job_delete
from apps.jobs.services.submitting import delete_inputs
from apps.registry.storage import model_store


class Command(BaseCommand):
    help = (
        "Delete finished jobs older than DAYS with their stored inputs (their audit rows stay), "
        "and input folders left behind by submissions that never committed."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--older-than", type=int, required=True, metavar="DAYS")
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args: object, **options: int) -> None:
        if options["older_than"] < 1:
            raise CommandError("--older-than must be at least 1.")
        cutoff = days_from_now(-options["older_than"], "--older-than")
        old = BatchJob.objects.filter(status__in=BatchJob.FINISHED, finished_at__lt=cutoff)
        orphans = self._orphan_folders(cutoff)
        if options["dry_run"]:
            self.stdout.write(f"Would delete {old.count()} jobs and {len(orphans)} orphaned input folders.")
            return
        jobs = 0
        for job in old.iterator():
            job_delete(job=job)
            jobs += 1
        for folder in orphans:
            delete_inputs([f"{folder}/{name}" for name in model_store.listdir(folder)[1]] or [f"{folder}/-"])
        self.stdout.write(f"Deleted {jobs} jobs and {len(orphans)} orphaned input folders.")

    @staticmethod
    def _orphan_folders(cutoff: dt.datetime) -> list[str]:
        """Input folders with no job row (a submission that failed or died before its commit)."""
        if not model_store.exists("jobs"):
            return []
        folders = []
        for name in model_store.listdir("jobs")[0]:
            try:
                job_id = uuid.UUID(name)
            except ValueError:
                continue
            folder = f"jobs/{name}"
            files = model_store.listdir(folder)[1]
            newest = max((model_store.get_modified_time(f"{folder}/{f}") for f in files), default=None)
            if (newest is None or newest < cutoff) and not BatchJob.objects.filter(pk=job_id).exists():
                folders.append(folder)
        return folders
