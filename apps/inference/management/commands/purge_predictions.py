"""python manage.py purge_predictions --older-than DAYS [--batch-size N] [--dry-run]"""

import argparse
import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

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
        cutoff = timezone.now() - dt.timedelta(days=options["older_than"])
        old = Prediction.objects.filter(created_at__lt=cutoff)
        if options["dry_run"]:
            self.stdout.write(f"Would delete {old.count()} predictions older than {cutoff:%Y-%m-%d %H:%M}.")
            return
        total = 0
        while True:
            ids = list(old.order_by("id").values_list("id", flat=True)[: options["batch_size"]])
            if not ids:
                break
            deleted, _ = Prediction.objects.filter(id__in=ids).delete()
            total += deleted
        self.stdout.write(f"Deleted {total} predictions older than {cutoff:%Y-%m-%d %H:%M}.")
