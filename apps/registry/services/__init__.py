"""Writes to the registry. Callers use `services.<name>`; the code lives in three modules:
`catalog` (models, versions, aliases, grants), `converting` (an upload in another format,
converted to ONNX on a worker) and `validating` (a version's validation on a worker).
"""

from apps.registry.services.catalog import (
    alias_delete,
    alias_set,
    enqueue_version_validation,
    grant_delete,
    grant_set,
    model_create,
    model_delete,
    model_update,
    model_version_archive,
    model_version_create,
    model_version_update,
)
from apps.registry.services.converting import model_version_convert, reconcile_conversions
from apps.registry.services.validating import (
    model_version_validate,
    reconcile_versions,
    versions_to_reenqueue,
)

__all__ = [
    "alias_delete",
    "alias_set",
    "enqueue_version_validation",
    "grant_delete",
    "grant_set",
    "model_create",
    "model_delete",
    "model_update",
    "model_version_archive",
    "model_version_convert",
    "model_version_create",
    "model_version_update",
    "model_version_validate",
    "reconcile_conversions",
    "reconcile_versions",
    "versions_to_reenqueue",
]
