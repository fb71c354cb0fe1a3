"""python manage.py create_api_key USERNAME --name N [--scopes ...] [--models ...] [--expires-in-days D]"""

import argparse
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import ApiKey
from apps.accounts.services.api_keys import api_key_create
from apps.core.commands import days_from_now
from apps.core.exceptions import ApplicationError


class Command(BaseCommand):
    help = "Create an API key for a user and print it once (only its digest is stored)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", required=True)
        parser.add_argument(
            "--scopes",
            nargs="+",
            default=[ApiKey.Scope.MODELS_READ, ApiKey.Scope.PREDICT],
            choices=ApiKey.Scope.values,
            help="Default: models:read predict.",
        )
        parser.add_argument("--models", nargs="+", default=[], help="Limit the key to these model names.")
        parser.add_argument("--expires-in-days", type=int)
        parser.add_argument("--rate-limit-per-minute", type=int)

    def handle(self, *args: object, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user named {options['username']!r}.")
        days = options["expires_in_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-in-days must be at least 1.")
        try:
            created = api_key_create(
                owner=user,
                name=options["name"],
                scopes=list(options["scopes"]),
                model_names=list(options["models"]),
                expires_at=days_from_now(days, "--expires-in-days") if days else None,
                rate_limit_per_minute=options["rate_limit_per_minute"],
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(created.key)
