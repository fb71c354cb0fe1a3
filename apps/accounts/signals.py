"""Keep cached per-user limits in step with the admin's edits."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.accounts.models import UserLimits
from apps.accounts.services import limits_invalidate


@receiver([post_save, post_delete], sender=UserLimits)
def forget_cached_limits(sender: type, instance: UserLimits, **kwargs: object) -> None:
    limits_invalidate(instance.user_id)
