"""python manage.py add_evaluation_set --model NAME --name SET --file PATH [--description TEXT]"""

import argparse
from pathlib import Path
from typing import Any

from django.core.files import File
from django.core.management.base import BaseCommand, CommandError

from apps.core.exceptions import ApplicationError
from apps.optimization.services.evaluation_sets import evaluation_set_create
from apps.registry.models import MLModel


class Command(BaseCommand):
    help = "Register a labelled evaluation set (zip of label folders, or JSON Lines) for a model."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--model", required=True)
        parser.add_argument("--name", required=True)
        parser.add_argument("--file", required=True, type=Path)
        parser.add_argument("--description", default="")

    def handle(self, *args: object, **options: Any) -> None:
        model = MLModel.objects.filter(name=options["model"]).first()
        if model is None:
            raise CommandError(f"No model named '{options['model']}'.")
        path: Path = options["file"]
        try:
            with path.open("rb") as handle:
                created = evaluation_set_create(
                    model=model,
                    name=str(options["name"]),
                    upload=File(handle, name=path.name),
                    description=str(options["description"]),
                    user=model.owner,
                )
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(f"Evaluation set {model.name}/{created.name}: {created.summary['items']} items")
