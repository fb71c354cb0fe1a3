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
    def base_location(self) -> str:
        return str(settings.MODEL_STORE_ROOT)

    @property
    def location(self) -> str:
        return os.path.abspath(self.base_location)

    @property
    def base_url(self) -> None:  # type: ignore[override]
        return None  # artifacts are never served over HTTP


model_store = ModelStore()


def local_path(name: str | None) -> Path:
    """A local filesystem path for the artifact `name` (FileSystemStorage only). `name` is
    a file field's (`version.artifact.name`), whose type allows None for an empty field."""
    return Path(model_store.path(stored_name(name)))


def stored_name(name: str | None) -> str:
    """The name of a stored file, from a file field that holds one (a version's artifact or
    source once saved, an evaluation set's file): None is an error, said plainly."""
    if name is None:
        raise ValueError("The file field holds no file.")
    return name
