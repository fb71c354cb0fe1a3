"""Where model artifacts live: a Django storage rooted at settings.MODEL_STORE_ROOT."""

import os
from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage


class ModelStore(FileSystemStorage):
    """Filesystem storage that reads MODEL_STORE_ROOT on every use, not once at import,
    so a changed setting (tests, management commands) takes effect at once.
    Swapping in an S3-compatible storage is a matter of replacing this class."""

    @property
    def base_location(self) -> str:  # type: ignore[override]
        return str(settings.MODEL_STORE_ROOT)

    @property
    def location(self) -> str:  # type: ignore[override]
        return os.path.abspath(self.base_location)

    @property
    def base_url(self) -> None:  # type: ignore[override]
        return None  # artifacts are never served over HTTP


model_store = ModelStore()


def local_path(name: str) -> Path:
    """A local filesystem path for the artifact `name` (FileSystemStorage only)."""
    return Path(model_store.path(name))
