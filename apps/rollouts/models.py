"""Rollouts: an alias that splits its traffic between its version (the primary) and
candidates, by weight, until one is promoted or the split ends (ADR 0017).

While a rollout is active its alias stays on the primary and cannot be moved or deleted
by hand: the split ends by promotion (the alias moves to a candidate), abort (it stays),
or a guard rail (stopped, with the reason).
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.core.models import TimeStampedModel
from apps.registry.models import MLModel, ModelVersion

PRIMARY = "primary"
CANARY = "canary"
SHADOW = "shadow"


class Rollout(TimeStampedModel):
    class Status(models.TextChoices):
        ACTIVE = "active"
        PROMOTED = "promoted"
        ABORTED = "aborted"
        STOPPED = "stopped"

    model = models.ForeignKey(MLModel, on_delete=models.CASCADE, related_name="rollouts")
    alias_name = models.SlugField(max_length=64)
    # RESTRICT, not PROTECT: a version a rollout names cannot be deleted on its own, but
    # deleting the whole model takes its rollouts with it.
    primary = models.ForeignKey(ModelVersion, on_delete=models.RESTRICT, related_name="rollouts_as_primary")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    reason = models.TextField(blank=True, help_text="Why the rollout ended.")
    promoted_to = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.RESTRICT, related_name="+"
    )
    # Guard rails: a candidate past either threshold over at least `min_requests` of its
    # answers stops the rollout (checked by a periodic task, ROLLOUT_GUARD_INTERVAL_SECONDS).
    max_error_rate = models.FloatField(null=True, blank=True, help_text="0 to 1.")
    max_latency_p95_ms = models.FloatField(null=True, blank=True)
    min_requests = models.PositiveIntegerField(default=100)
    # Shadow (ADR 0018): `shadow_percent` of the primary's requests are run again, off the
    # request path, by this version; its answers are audit rows with source 'shadow'.
    shadow = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.RESTRICT, related_name="rollouts_as_shadow"
    )
    shadow_percent = models.PositiveSmallIntegerField(default=0, help_text="0-100.")
    # The shadow's guard rail: past this share of disagreeing top-1 classes over at least
    # `shadow_min_pairs` paired inputs, the shadow stops and its version is flagged.
    max_shadow_disagreement = models.FloatField(null=True, blank=True, help_text="0 to 1.")
    shadow_min_pairs = models.PositiveIntegerField(default=100)
    shadow_stopped_at = models.DateTimeField(null=True, blank=True)
    shadow_reason = models.TextField(blank=True, help_text="Why the shadow stopped (the version is flagged).")
    # Inputs not shadowed because the shadow queue was behind (or the rollout had moved on):
    # primary rows = shadow rows + dropped, for the sampled requests.
    shadow_dropped = models.PositiveBigIntegerField(default=0, editable=False)
    # The audit rows of this rollout have ids above this one (an index range, not a scan).
    first_prediction_id = models.BigIntegerField(default=0, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "alias_name"],
                condition=Q(status="active"),
                name="one_active_rollout_per_alias",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.alias_name} rollout #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    @property
    def is_shadowing(self) -> bool:
        return (
            self.is_active
            and self.shadow_id is not None
            and self.shadow_percent > 0
            and not self.shadow_stopped_at
        )


class RolloutCandidate(models.Model):
    """A candidate version and its share (percent) of the alias's routing keys."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="candidates")
    version = models.ForeignKey(ModelVersion, on_delete=models.RESTRICT, related_name="rollout_candidacies")
    weight = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["rollout", "version"], name="unique_candidate_per_rollout"),
        ]

    def __str__(self) -> str:
        return f"v{self.version.number} at {self.weight}%"
