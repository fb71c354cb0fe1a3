"""Evaluation sets: a model's labelled inputs, stored and checked (readable, not empty,
labels the model has)."""

import hashlib
import tarfile
from typing import Any

from django.conf import settings

from apps.accounts.models import User
from apps.core.exceptions import Conflict, PayloadTooLarge
from apps.optimization import evaluation
from apps.optimization.models import EvaluationSet
from apps.registry.models import MLModel, ModelVersion
from apps.registry.storage import local_path


def _labels_of(model: MLModel) -> list[str]:
    latest = (
        model.versions.filter(status=ModelVersion.Status.READY).exclude(labels=[]).order_by("-number").first()
    )
    return latest.labels if latest is not None else []


def evaluation_set_create(
    *, model: MLModel, name: str, upload: Any, description: str = "", user: User | None
) -> EvaluationSet:
    """Store and check an evaluation set: readable, not empty, labels the model has."""
    if EvaluationSet.objects.filter(model=model, name=name).exists():
        raise Conflict(f"Model '{model.name}' already has an evaluation set '{name}'.", code="duplicate_name")
    size = upload.size or 0
    if size > settings.EVALUATION_SET_MAX_BYTES:
        raise PayloadTooLarge(
            f"An evaluation set may be at most {settings.EVALUATION_SET_MAX_BYTES} bytes.",
            details={"limit_bytes": settings.EVALUATION_SET_MAX_BYTES},
        )
    head = upload.read(8)
    upload.seek(0)
    is_archive = head.startswith(b"PK") or tarfile.is_tarfile(upload)
    upload.seek(0)
    kind = EvaluationSet.Kind.IMAGES if is_archive else EvaluationSet.Kind.JSONL
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    evaluation_set = EvaluationSet(
        model=model,
        name=name,
        kind=kind,
        sha256=digest.hexdigest(),
        size_bytes=size,
        description=description,
        created_by=user,
    )
    evaluation_set.file.save("set", upload, save=False)
    try:
        evaluation_set.summary = evaluation.summarize(
            local_path(evaluation_set.file.name), kind, _labels_of(model)
        )
        evaluation_set.save()
    except BaseException:
        evaluation_set.file.delete(save=False)
        raise
    return evaluation_set


def evaluation_set_delete(*, evaluation_set: EvaluationSet) -> None:
    name = evaluation_set.file.name
    evaluation_set.delete()
    if name is not None:  # every set has its file (the field's type allows None)
        evaluation_set.file.storage.delete(name)
