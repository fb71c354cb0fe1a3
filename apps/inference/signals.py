"""Registry and rollout changes made in this process clear the cached prediction targets at once."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.inference.targets import targets
from apps.registry.models import MLModel, ModelAlias, ModelGrant, ModelVersion
from apps.rollouts.models import Rollout, RolloutCandidate


@receiver([post_save, post_delete], sender=MLModel)
@receiver([post_save, post_delete], sender=ModelVersion)
@receiver([post_save, post_delete], sender=ModelAlias)
@receiver([post_save, post_delete], sender=ModelGrant)
@receiver([post_save, post_delete], sender=Rollout)
@receiver([post_save, post_delete], sender=RolloutCandidate)
def forget_targets(sender: type, **kwargs: object) -> None:
    targets.clear()
