"""python manage.py purge_predictions --older-than DAYS [--batch-size N] [--dry-run]"""

import argparse

from django.core.management.base import BaseCommand, CommandError

from apps.core.commands import days_from_now
from apps.inference.models import Prediction


class Command(BaseCommand):
    help = "Delete audit rows older than DAYS, in batches, so the table is never locked for long."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--older-than", type=int, required=True, metavar="DAYS")
        parser.add_argument("--batch-size", type=int, default=10_000)
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args: object, **options: int) -> None:
        if options["older_than"] < 1 or options["batch_size"] < 1:
            raise CommandError("--older-than and --batch-size must be at least 1.")
        cutoff = days_from_now(-options["older_than"], "--older-than")
        old = Prediction.objects.filter(created_at__lt=cutoff)
        if options["dry_run"]:
            self.stdout.write(f"Would delete {old.count()} predictions older than {cutoff:%Y-%m-%d %H:%M}.")
            return
        total, size = 0, options["batch_size"]
        while True:
            # A batch is bounded by its last id rather than listed, so that no batch size runs
            # into a database's limit on query parameters (SQLite's is 250,000).
            edge = list(old.order_by("id").values_list("id", flat=True)[size - 1 : size])
            deleted, _ = (old.filter(id__lte=edge[0]) if edge else old).delete()
            total += deleted
            if not edge:  # that was the last, short batch
                break
        self.stdout.write(f"Deleted {total} predictions older than {cutoff:%Y-%m-%d %H:%M}.")
