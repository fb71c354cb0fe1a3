"""Conversion tasks. Thin: take a string id, call the service, which owns the logic."""

from apps.registry.services import model_version_convert
from workers.profiles import task


@task("conversion")
def convert_model_version(version_id: str) -> None:
    """Convert an uploaded SavedModel, Keras, TorchScript or .pt2 file to ONNX in a sandboxed
    child process: `converting` → `pending` (validation is enqueued) | `failed`.

    Idempotent (a version no longer converting, or held by another worker, is left alone), so
    late acknowledgement and redelivery after a lost worker are safe; attempts are capped."""
    model_version_convert(version_id=int(version_id))
