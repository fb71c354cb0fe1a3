"""Register an ONNX file from the command line.

python manage.py register_model --name NAME --file F.onnx [--labels L] [--preprocessing P.json] [--alias A]
"""

import argparse
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import User
from apps.core.exceptions import ApplicationError
from apps.registry import services
from apps.registry.models import MLModel, ModelVersion


class Command(BaseCommand):
    help = "Register an ONNX file as a new version of a model (creating the model if needed) and validate it."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--name", required=True, help="Model name (a URL-safe slug).")
        parser.add_argument("--file", required=True, type=Path, help="The .onnx file.")
        parser.add_argument("--labels", type=Path, help="Labels: one per line, or a JSON list.")
        parser.add_argument("--preprocessing", type=Path, help="Preprocessing config, JSON.")
        parser.add_argument("--alias", help="Point this alias at the version once it is ready.")
        parser.add_argument("--owner", help="Username of the owner (default: the first superuser).")
        parser.add_argument("--task", default=MLModel.Task.IMAGE_CLASSIFICATION, choices=MLModel.Task.values)
        parser.add_argument(
            "--visibility", default=MLModel.Visibility.PRIVATE, choices=MLModel.Visibility.values
        )
        parser.add_argument("--description", default="")
        parser.add_argument(
            "--async", dest="run_async", action="store_true", help="Enqueue validation on a worker instead."
        )

    def handle(self, *args: object, **options: Any) -> None:
        if options["run_async"] and options["alias"]:
            raise CommandError("--alias needs the version validated first; it cannot be used with --async.")
        owner = self._owner(options["owner"])
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        try:
            model = MLModel.objects.filter(name=options["name"]).first() or services.model_create(
                owner=owner,
                name=options["name"],
                description=options["description"],
                task=options["task"],
                visibility=options["visibility"],
            )
            version = self._create_version(model, owner, path, options)
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        if options["run_async"]:
            self.stdout.write(f"Registered {model.name} v{version.number}; validation enqueued.")
            return
        validated = services.model_version_validate(version_id=version.pk)
        if validated is None:  # deleted while this ran
            raise CommandError(f"{model.name} v{version.number} no longer exists.")
        version = validated
        if version.status != ModelVersion.Status.READY:
            raise CommandError(f"{model.name} v{version.number} failed validation: {version.status_reason}")
        latency = version.metrics["latency_ms"]
        self.stdout.write(
            f"{model.name} v{version.number} is ready: "
            f"p50 {latency['p50']} ms, p95 {latency['p95']} ms at batch 1"
        )
        if options["alias"]:
            services.alias_set(model=model, name=options["alias"], version=version, user=owner)
            self.stdout.write(f"Alias {options['alias']} → v{version.number}")

    def _owner(self, username: str | None) -> User:
        users = get_user_model().objects
        if username:
            owner = users.filter(username=username).first()
        else:
            owner = users.filter(is_superuser=True).order_by("pk").first()
        if owner is None:
            raise CommandError("No owner: pass --owner USERNAME or create a superuser first.")
        return owner

    def _create_version(self, model: MLModel, owner: User, path: Path, options: dict) -> ModelVersion:
        labels = options["labels"].read_bytes() if options["labels"] else None
        preprocessing = options["preprocessing"].read_text() if options["preprocessing"] else None
        with path.open("rb") as fh:
            return services.model_version_create(
                model=model,
                file=File(fh, name=path.name),
                created_by=owner,
                labels=labels,
                preprocessing=preprocessing,
                enqueue_validation=bool(options["run_async"]),
            )
