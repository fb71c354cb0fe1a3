"""Create the demo superuser and register the demo model; safe to run again."""

import argparse
import hashlib

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import ApiKey, User
from apps.accounts.services.api_keys import CreatedKey, api_key_create, api_key_revoke
from apps.registry import services
from apps.registry.models import ModelVersion

DEMO_MODEL = "efficientnet-lite0"
DEMO_KEY_NAME = "demo (make run)"


class Command(BaseCommand):
    help = "Create the demo superuser and register the EfficientNet-Lite0 demo model under alias production."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo-password")

    def handle(self, *args: object, **options: str) -> None:
        users = get_user_model().objects
        user = users.filter(username=options["username"]).first()
        if user is None:
            user = users.create_superuser(options["username"], "demo@example.com", options["password"])
        demo_dir = settings.BASE_DIR / "demo" / "efficientnet_lite0"
        sha256 = hashlib.sha256((demo_dir / "model.onnx").read_bytes()).hexdigest()
        version = ModelVersion.objects.filter(model__name=DEMO_MODEL, sha256=sha256).first()
        if version is None:
            call_command(
                "register_model",
                name=DEMO_MODEL,
                file=demo_dir / "model.onnx",
                labels=demo_dir / "labels.txt",
                preprocessing=demo_dir / "preprocessing.json",
                alias="production",
                owner=user.username,
                visibility="internal",
                description="EfficientNet-Lite0, ImageNet-1k classifier (Apache-2.0).",
                stdout=self.stdout,
            )
        else:
            # An earlier run registered it: finish what that run left undone.
            version = services.model_version_validate(version_id=version.pk)
            if version is None:  # deleted while this ran
                raise CommandError("The demo model's version no longer exists: run this again.")
            if version.status != ModelVersion.Status.READY:
                raise CommandError(f"The demo model is {version.status}: {version.status_reason}")
            services.alias_set(model=version.model, name="production", version=version, user=user)
        created = self._demo_key(user)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo superuser: {options['username']} / {options['password']}  "
                f"(model '{DEMO_MODEL}' is ready under alias production)\n"
                f"Demo API key (shown once; earlier demo keys are revoked): {created.key}"
            )
        )

    def _demo_key(self, user: User) -> CreatedKey:
        """A fresh key each run: the secret of an earlier one cannot be shown again."""
        for old in ApiKey.objects.filter(owner=user, name=DEMO_KEY_NAME, revoked_at__isnull=True):
            api_key_revoke(api_key=old)
        return api_key_create(owner=user, name=DEMO_KEY_NAME, scopes=list(ApiKey.Scope.values))
