"""Keep cached access tokens in step with the rows they were read from: a revoked token (the
toolkit deletes it), a changed or disabled application, a deactivated user or owner."""

from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import Q
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from oauth2_provider.models import get_access_token_model

from apps.accounts.models import User
from apps.oauth.authentication import forget_tokens, live_token_checksums
from apps.oauth.models import Application

if TYPE_CHECKING:
    from oauth2_provider.models import AccessToken


def _forget_now_and_on_commit(checksums: list[str]) -> None:
    # Now and again after the commit: a request in between would otherwise re-read the old
    # committed row and cache it anew.
    if checksums:
        forget_tokens(checksums)
        transaction.on_commit(lambda: forget_tokens(checksums))


@receiver([post_save, post_delete], sender=get_access_token_model())
def forget_cached_token(sender: type, instance: "AccessToken", **kwargs: object) -> None:
    _forget_now_and_on_commit([instance.token_checksum])


@receiver([post_save, post_delete], sender=Application)
def forget_tokens_of_application(sender: type, instance: Application, **kwargs: object) -> None:
    """Scopes, models, disabled: each applies to the tokens already issued at once."""
    if kwargs.get("created"):
        return
    _forget_now_and_on_commit(live_token_checksums(application_id=instance.pk))


@receiver(post_save, sender=User)
def forget_tokens_of_user(sender: type, instance: User, **kwargs: object) -> None:
    """A deactivated user's tokens, and those of the applications a deactivated user owns."""
    if kwargs.get("created"):
        return
    _forget_now_and_on_commit(live_token_checksums_of_user(instance.pk))


def live_token_checksums_of_user(user_id: int) -> list[str]:
    tokens = get_access_token_model().objects.filter(Q(user_id=user_id) | Q(application__user_id=user_id))
    return live_token_checksums(pk__in=tokens.values("pk"))
