"""The pipeline's inputs and outcomes (apps/inference/pipeline.py), and its first step: an
input read and described for its audit row before anything is done with it. No ORM imports."""

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from apps.core.exceptions import ApplicationError, InvalidInput, UnprocessableInput
from apps.core.text import client_text

IMAGE, TENSORS = "image", "tensors"


@dataclass
class Input:
    """One input as a door read it: image bytes, or named tensors (parsed, or JSON bytes)."""

    kind: str = IMAGE
    data: bytes | None = None
    tensors: Any = None
    opener: Callable[[], bytes] | None = None  # read when the pipeline gets to it (a stored input)
    content_type: str = ""
    filename: str = ""
    digest: str = ""  # sha256 of the bytes, when the door knows it already
    size: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # the door's own audit metadata


@dataclass
class Outcome:
    """What became of one input: its audit description, its answer, or its error."""

    input: Input
    digest: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    array: np.ndarray | None = None
    feeds: dict[str, np.ndarray] | None = None
    output: dict[str, Any] = field(default_factory=dict)  # what the client gets (JSON)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # the model's outputs, for binary doors
    audit_output: dict[str, Any] = field(default_factory=dict)  # what the audit row keeps
    error: ApplicationError | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None

    def fail(self, error: ApplicationError) -> None:
        self.error, self.array, self.feeds = error, None, None
        self.output, self.audit_output, self.arrays = {}, {}, {}


def describe(item: Input) -> Outcome:
    """The audit description of an input, before anything is done with it."""
    outcome = Outcome(input=item, digest=item.digest)
    if item.kind == IMAGE:
        if item.data is not None and not outcome.digest:
            outcome.digest = hashlib.sha256(item.data).hexdigest()
        size = item.size if item.size is not None else len(item.data or b"")
        # The client's strings, made safe to store and to show.
        outcome.meta = {"kind": IMAGE, "content_type": client_text(item.content_type, 100), "size": size}
        if item.filename:
            outcome.meta["filename"] = client_text(item.filename, 200)
    elif isinstance(item.tensors, dict):
        outcome.meta = {"kind": TENSORS, "names": tensor_names(item.tensors)}
    elif item.data is not None or item.opener is not None:
        outcome.meta = {
            "kind": TENSORS,
            "size": item.size if item.size is not None else len(item.data or b""),
        }
    outcome.meta.update(item.meta)
    return outcome


def tensor_names(value: dict[str, Any]) -> list[str]:
    return [client_text(str(name), 200) for name in sorted(value)[:100]]


def read(outcome: Outcome) -> bytes:
    item = outcome.input
    if item.data is None and item.opener is not None:
        try:
            item.data = item.opener()
        except (OSError, ValueError) as exc:
            raise ApplicationError("The stored input could not be read.", code="input_missing") from exc
    return item.data or b""


def decode_base64_image(value: Any, index: int) -> tuple[bytes, str]:
    """A base64 image from JSON (or a `data:` URL), as every door reads one: its bytes and the
    content type a data URL names. 400 for a value that is not a string, 422 for bad base64."""
    if not isinstance(value, str):
        raise InvalidInput(f"Image {index} must be a base64 string.", code="invalid_image")
    content_type = ""
    if value.startswith("data:"):  # data:image/jpeg;base64,...
        header, _, value = value.partition(",")
        content_type = header[5:].split(";")[0]
    try:
        return base64.b64decode(value, validate=True), content_type
    except (binascii.Error, ValueError) as exc:
        raise UnprocessableInput(f"Image {index} is not valid base64.", code="invalid_image") from exc
