"""The registry: models, their versions, aliases and grants, and who may see what.

Who sees what is one rule, `VisibleQuerySet.visible_to(user, api_key)`: staff see every
row, other users the rows that are theirs, and an API key limited to named models only
those models' rows. Models, audit rows (`Prediction`) and jobs (`BatchJob`) each say only
what "theirs" means.
"""

from typing import TYPE_CHECKING, Self

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.core.models import TimeStampedModel
from apps.registry.storage import model_store

if TYPE_CHECKING:
    from apps.accounts.credentials import Credential
    from apps.accounts.models import User


def key_limit(api_key: "Credential | None", field: str = "name") -> Q:
    """A key's model names as a filter on `field` (a model name): no condition without a key
    or for a key without names, which may use every model its owner may. The same test as
    `ApiKey.allows_model`, for a query."""
    if api_key is None or not api_key.model_names:
        return Q()
    return Q(**{f"{field}__in": api_key.model_names})


class VisibleQuerySet(models.QuerySet):
    """Rows some users may see: models, or rows that name a model (audit rows, jobs)."""

    # The field holding the model's name, for a key limited to named models.
    model_name_field = "name"

    def theirs(self, user: "User") -> Q:
        """The rows a user who is not staff sees, before any key limit."""
        raise NotImplementedError

    def visible_to(self, user: "User", api_key: "Credential | None" = None) -> Self:
        """What `user` may see through `api_key` (None for a session or a JWT). A key never
        sees more than its owner, and a limited one only its models' rows."""
        rows = self if user.is_staff else self.filter(self.theirs(user))
        return rows.filter(key_limit(api_key, self.model_name_field))


class MLModelQuerySet(VisibleQuerySet):
    def theirs(self, user: "User") -> Q:
        """Own models, the internal ones, and those granted to the user (any role)."""
        granted = ModelGrant.objects.filter(user=user).values("model_id")
        return Q(owner=user) | Q(visibility=MLModel.Visibility.INTERNAL) | Q(pk__in=granted)


class MLModel(TimeStampedModel):
    """A named model; its versions hold the ONNX artifacts, aliases point at versions."""

    class Task(models.TextChoices):
        IMAGE_CLASSIFICATION = "image-classification"
        TENSOR = "tensor"

    class Visibility(models.TextChoices):
        PRIVATE = "private"
        INTERNAL = "internal"

    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    task = models.CharField(max_length=32, choices=Task.choices, default=Task.IMAGE_CLASSIFICATION)
    visibility = models.CharField(max_length=16, choices=Visibility.choices, default=Visibility.PRIVATE)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ml_models")
    # Counter for version numbers. Incrementing it with UPDATE takes the row lock,
    # which serialises concurrent uploads; numbers are never reused.
    next_version_number = models.PositiveIntegerField(default=1, editable=False)

    objects = MLModelQuerySet.as_manager()

    class Meta:
        verbose_name = "model"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def is_visible_to(self, user: "User", api_key: "Credential | None" = None) -> bool:
        """`MLModel.objects.visible_to` for this one model, already in hand (a prediction's
        cached model): no query for staff, the owner or an internal model; otherwise one for
        a grant, read on each call so that a revoked grant applies at once."""
        if api_key is not None and not api_key.allows_model(self.name):
            return False
        if user.is_staff or self.owner_id == user.pk or self.visibility == self.Visibility.INTERNAL:
            return True
        return ModelGrant.objects.filter(model=self, user=user).exists()


def artifact_path(instance: "ModelVersion", filename: str) -> str:
    return f"models/{instance.model_id}/v{instance.number}/{instance.sha256[:12]}.onnx"


def source_path(instance: "ModelVersion", filename: str) -> str:
    """An uploaded model in another format, kept next to the ONNX file converted from it."""
    return f"models/{instance.model_id}/v{instance.number}/source-{instance.sha256[:12]}{filename}"


class ModelVersion(TimeStampedModel):
    class Status(models.TextChoices):
        CONVERTING = "converting"  # an upload in another format, on its way to ONNX
        PENDING = "pending"
        VALIDATING = "validating"
        READY = "ready"
        FAILED = "failed"
        ARCHIVED = "archived"

    model = models.ForeignKey(MLModel, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    # The ONNX file served; empty while a version uploaded in another format converts.
    artifact = models.FileField(storage=model_store, upload_to=artifact_path, max_length=500, blank=True)
    # The uploaded file when it was not ONNX (a SavedModel archive, .keras, .pt, .pt2); its
    # sha256 is `sha256`, so a re-upload of the same file is a duplicate.
    source = models.FileField(storage=model_store, upload_to=source_path, max_length=500, blank=True)
    # For a converted version: the format, the options of the upload, and once converted the
    # framework and converter versions and the parity report (apps/registry/intake/).
    converted_from = models.JSONField(default=dict, blank=True)
    conversion_attempts = models.PositiveSmallIntegerField(default=0)
    # The conversion's lease: stamped at the claim and renewed while the worker converts.
    conversion_started_at = models.DateTimeField(null=True, blank=True)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    status_reason = models.TextField(blank=True)
    # Stable code of a validation failure (e.g. runtime_load_failed), next to the readable reason.
    failure_code = models.CharField(max_length=40, blank=True)
    signature = models.JSONField(default=dict, blank=True)
    labels = models.JSONField(default=list, blank=True)
    preprocessing = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    notes = models.TextField(blank=True)
    derived_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="derivatives"
    )
    # For a derived version: the recipe, its parameters and the comparison report.
    optimization = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    validation_attempts = models.PositiveSmallIntegerField(default=0)
    validation_started_at = models.DateTimeField(null=True, blank=True)
    validated_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["model", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["model", "number"], name="unique_version_number_per_model"),
            models.UniqueConstraint(fields=["model", "sha256"], name="unique_artifact_per_model"),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} v{self.number}"

    @property
    def is_ready(self) -> bool:
        return self.status == self.Status.READY

    @property
    def is_servable(self) -> bool:
        """Ready, or a sound model refused only by its optimization's accuracy gate (it serves
        by version number, or under an alias an admin forced onto it)."""
        return self.is_ready or (self.status == self.Status.FAILED and self.failure_code == "accuracy_gate")


class ModelAlias(TimeStampedModel):
    """A movable name (`production`, `staging`, …) for one ready version of a model."""

    model = models.ForeignKey(MLModel, on_delete=models.CASCADE, related_name="aliases")
    name = models.SlugField(max_length=64)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name_plural = "model aliases"
        ordering = ["model", "name"]
        constraints = [models.UniqueConstraint(fields=["model", "name"], name="unique_alias_per_model")]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.name}"


class ModelAliasHistory(models.Model):
    """Append-only log of alias changes: who pointed which alias from where to where."""

    class Action(models.TextChoices):
        SET = "set"
        MOVE = "move"
        DELETE = "delete"

    model = models.ForeignKey(MLModel, on_delete=models.CASCADE, related_name="alias_history")
    alias_name = models.SlugField(max_length=64)
    action = models.CharField(max_length=8, choices=Action.choices)
    # Version numbers are kept as plain numbers too, so the record survives deletes.
    from_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    from_number = models.PositiveIntegerField(null=True, blank=True)
    to_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    to_number = models.PositiveIntegerField(null=True, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name_plural = "model alias history"
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.alias_name}: {self.from_number} → {self.to_number}"


class ModelGrant(models.Model):
    """A user's role on a model besides its owner: maintainer (may change it) or consumer."""

    class Role(models.TextChoices):
        MAINTAINER = "maintainer"
        CONSUMER = "consumer"

    model = models.ForeignKey(MLModel, on_delete=models.CASCADE, related_name="grants")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="model_grants")
    role = models.CharField(max_length=16, choices=Role.choices)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "user"], name="unique_grant_per_user")]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.model}"
