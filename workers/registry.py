"""Registry tasks. Thin: take a string id, call the service, which owns the logic."""

from celery import shared_task

from apps.registry.services import model_version_validate, reconcile_versions


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def validate_model_version(version_id: str) -> None:
    """Validate a version: `pending` → `validating` → `ready` | `failed`.

    Idempotent (a finished version is left alone), so late acknowledgement and
    redelivery after a lost worker are safe; attempts are capped in the service.
    """
    model_version_validate(version_id=int(version_id))


@shared_task(name="workers.registry.reconcile", ignore_result=True)
def reconcile() -> None:
    """Periodic (Celery beat): re-enqueue validations owed after a lost message or a dead worker."""
    reconcile_versions()
