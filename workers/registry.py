"""Registry tasks. Thin: take a string id, call the service, which owns the logic."""

from apps.registry.services import model_version_validate, reconcile_conversions, reconcile_versions
from workers.profiles import task


@task("model_check")
def validate_model_version(version_id: str) -> None:
    """Validate a version: `pending` → `validating` → `ready` | `failed`.

    Idempotent (a finished version is left alone), so late acknowledgement and
    redelivery after a lost worker are safe; attempts are capped in the service.
    """
    model_version_validate(version_id=int(version_id))


@task("reconciler")
def reconcile() -> None:
    """Periodic (Celery beat): re-enqueue validations and conversions owed after a lost message
    or a dead worker."""
    reconcile_versions()
    reconcile_conversions()
