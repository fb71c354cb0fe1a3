from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.registry.models import ModelGrant, VisibleQuerySet

if TYPE_CHECKING:
    from apps.accounts.models import User


class PredictionQuerySet(VisibleQuerySet):
    model_name_field = "model_name"

    def theirs(self, user: "User") -> Q:
        """The user's own rows, whatever the model's visibility now: the trail records what
        they asked, and still reads after the model is deleted or a grant is revoked.

        A shadow row (a rollout's) is the model owner's, not the caller's: its owner reads
        it as their own, its maintainers through their grant (one small query first, so a
        user who maintains nothing keeps the plain, indexed filter)."""
        maintained = list(
            ModelGrant.objects.filter(user=user, role=ModelGrant.Role.MAINTAINER).values_list(
                "model__name", flat=True
            )
        )
        if not maintained:
            return Q(user=user)
        return Q(user=user) | Q(source=Prediction.Source.SHADOW, model_name__in=maintained)


class Prediction(models.Model):
    """One prediction (one input of a request or of a job): the audit trail.

    Who asked (user, key, address, request id), which model version answered,
    a digest and description of the input (never the input itself), what came
    out, and how long it took. Names and numbers are copied in, so a row still
    reads correctly after its model or version is deleted.
    """

    class Source(models.TextChoices):
        SYNC = "sync"
        JOB = "job"
        V2_REST = "v2-rest"
        V2_GRPC = "v2-grpc"
        SHADOW = "shadow"  # a rollout's shadow version, off the request path (apps/rollouts)

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # No index of its own: prediction_user_recent (user, -id) serves lookups by user.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="predictions",
        db_index=False,
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="predictions"
    )
    # The OAuth application whose access token made the request. Added to the largest table
    # as a bare nullable column (no rewrite): no index, written on every prediction and not
    # needed by any lookup, and no foreign-key constraint, whose validation would scan the
    # table under an exclusive lock. An application is disabled rather than deleted; a
    # deleted one leaves its id here, as the copied-in model names stay.
    oauth_application = models.ForeignKey(
        "oauth.Application",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    model_version = models.ForeignKey(
        "registry.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="predictions"
    )
    model_name = models.CharField(max_length=100)
    version_number = models.PositiveIntegerField()
    alias = models.CharField(max_length=64, blank=True)
    # Why this version answered an alias under a rollout: 'primary' or 'canary' ('' when the
    # alias had none, or a version was asked by number). Added to the largest table with a
    # constant database default: PostgreSQL stores it in the catalog, no rewrite, and a
    # process still running the previous code inserts rows without naming it.
    route = models.CharField(max_length=8, blank=True, default="", db_default="")
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.SYNC)
    input_sha256 = models.CharField(max_length=64, blank=True)
    input_meta = models.JSONField(default=dict, blank=True)
    output = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    # A shadow row's link to the primary's: the same request id, and the input's position
    # in that request (the primary's rows of a request are written in input order). Null
    # on every other row: a bare nullable column, no rewrite.
    input_index = models.PositiveIntegerField(null=True, blank=True)
    client_address = models.CharField(max_length=64, blank=True)
    # A job's item has at most one audit row: a re-run after a lost worker cannot write a second.
    job_item = models.OneToOneField(
        "jobs.JobItem", null=True, blank=True, on_delete=models.SET_NULL, related_name="prediction"
    )

    objects = PredictionQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        # Every index is written on every prediction, so there are no more than the
        # lookups need: exact matches only on the digest and the request id (a plain
        # btree, not Django's extra LIKE index on PostgreSQL).
        indexes = [
            models.Index(fields=["input_sha256"], name="prediction_input_sha256"),
            models.Index(fields=["request_id"], name="prediction_request_id"),
            models.Index(fields=["user", "-id"], name="prediction_user_recent"),
            models.Index(fields=["model_name", "version_number", "-id"], name="prediction_model_recent"),
        ]
        constraints = [
            # A retried shadow task writes each input's row once. Partial: only shadow rows
            # are in the index, so no other insert pays for it.
            models.UniqueConstraint(
                fields=["request_id", "input_index"],
                condition=Q(source="shadow"),
                name="one_shadow_row_per_input",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_name} v{self.version_number} {self.status} #{self.pk}"
