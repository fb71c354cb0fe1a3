"""Keep cached per-user limits in step with the admin's edits."""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.accounts.models import ApiKey, User, UserLimits
from apps.accounts.services.api_keys import api_key_forget
from apps.accounts.services.limits import limits_invalidate


@receiver([post_save, post_delete], sender=UserLimits)
def forget_cached_limits(sender: type, instance: UserLimits, **kwargs: object) -> None:
    # Evict now and again after the commit: a request in between would otherwise re-read
    # the old committed row and cache it anew.
    limits_invalidate(instance.user_id)
    transaction.on_commit(lambda: limits_invalidate(instance.user_id))


@receiver([post_save, post_delete], sender=ApiKey)
def forget_cached_key(sender: type, instance: ApiKey, **kwargs: object) -> None:
    """Any change to a key row (revoked in the admin, scopes edited) evicts its cached copy,
    now and again once the change is committed."""
    api_key_forget([instance.prefix])
    transaction.on_commit(lambda: api_key_forget([instance.prefix]))


@receiver([post_save, post_delete], sender=User)
def forget_cached_keys_of_user(sender: type, instance: User, **kwargs: object) -> None:
    """A deactivated or demoted owner must not keep authenticating through cached keys."""
    prefixes = list(ApiKey.objects.filter(owner_id=instance.pk).values_list("prefix", flat=True))
    api_key_forget(prefixes)
    transaction.on_commit(lambda: api_key_forget(prefixes))
