"""Evaluation sets of a model, and optimization runs that derive a new version from one."""

import uuid

from django.conf import settings
from django.db import models

from apps.registry.storage import model_store


def evaluation_set_path(instance: "EvaluationSet", filename: str) -> str:
    suffix = ".zip" if instance.kind == EvaluationSet.Kind.IMAGES else ".jsonl"
    return f"evaluation/{instance.model_id}/{uuid.uuid4().hex}{suffix}"


class EvaluationSet(models.Model):
    """Labelled inputs for measuring a model: a zip of images in one folder per label, or
    JSON Lines of inputs and labels. Used without its labels, it is a calibration set."""

    class Kind(models.TextChoices):
        IMAGES = "images"
        JSONL = "jsonl"

    model = models.ForeignKey("registry.MLModel", on_delete=models.CASCADE, related_name="evaluation_sets")
    name = models.SlugField(max_length=64)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    file = models.FileField(storage=model_store, upload_to=evaluation_set_path, max_length=500)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    summary = models.JSONField(default=dict, blank=True, help_text="Item count and items per label.")
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "name"]
        constraints = [models.UniqueConstraint(fields=["model", "name"], name="unique_evaluation_set_name")]

    def __str__(self) -> str:
        return f"{self.model.name}/{self.name}"


class OptimizationRun(models.Model):
    """One recipe applied to one version, run on a worker; its result is a new version."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    class Recipe(models.TextChoices):
        DYNAMIC_INT8 = "dynamic-int8"
        STATIC_INT8 = "static-int8"
        AUTO_INT8 = "auto-int8"
        FP16 = "fp16"
        GRAPH = "graph"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    model = models.ForeignKey("registry.MLModel", on_delete=models.CASCADE, related_name="optimizations")
    source_version = models.ForeignKey(
        "registry.ModelVersion", on_delete=models.CASCADE, related_name="optimizations"
    )
    result_version = models.ForeignKey(
        "registry.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recipe = models.CharField(max_length=16, choices=Recipe.choices)
    params = models.JSONField(default=dict, blank=True)
    evaluation_set = models.ForeignKey(
        EvaluationSet, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    calibration_set = models.ForeignKey(
        EvaluationSet, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    step = models.CharField(max_length=40, blank=True, help_text="What the worker is doing now.")
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent.")
    report = models.JSONField(default=dict, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.recipe} of {self.source_version} ({self.status})"
