"""Size limits of request bodies, enforced while the body is read, never after.

A view states its limits with `upload_limits = UploadLimits(...)` (setting names, read at
request time); a view without one gets the defaults (DATA_UPLOAD_MAX_MEMORY_SIZE for the
body and for each file). The parsing layer (apps/core/negotiation.py) refuses a body over
its limit from its Content-Length before reading a byte, and a multipart file over its
limit as soon as that many bytes have arrived: the first upload handler counts and stops
the upload, so nothing beyond the limit is read, kept in memory or written to disk.
Files above FILE_UPLOAD_MAX_MEMORY_SIZE are streamed to a temporary file by Django's
handlers behind it.
"""

from dataclasses import dataclass, field
from typing import Any, BinaryIO

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler

from apps.core.exceptions import PayloadTooLarge

# Multipart framing around the files (boundaries, part headers, small fields).
MULTIPART_SLACK_BYTES = 1024 * 1024
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class UploadLimits:
    """Names of the settings that bound a view's request body and the files in it."""

    body: str = "DATA_UPLOAD_MAX_MEMORY_SIZE"
    file: str = "DATA_UPLOAD_MAX_MEMORY_SIZE"
    # field name -> setting, for the fields whose files have a limit of their own
    fields: dict[str, str] = field(default_factory=dict)

    def body_bytes(self) -> int:
        return getattr(settings, self.body)

    def file_bytes(self, field_name: str | None) -> int:
        return getattr(settings, self.fields.get(field_name or "", self.file))


DEFAULT_LIMITS = UploadLimits()
# The doors that take batch inputs: one input at most JOB_MAX_ITEM_BYTES, an archive (many
# inputs) and the body at most JOB_MAX_BYTES.
JOB_INPUT_LIMITS = UploadLimits(
    body="JOB_MAX_BYTES", file="JOB_MAX_ITEM_BYTES", fields={"archive": "JOB_MAX_BYTES"}
)


def limits_of(view: Any) -> UploadLimits:
    return getattr(view, "upload_limits", None) or DEFAULT_LIMITS


def too_large(what: str, size: int | None, limit: int, code: str = "payload_too_large") -> PayloadTooLarge:
    stated = f" is {size} bytes;" if size is not None else " is over its limit;"
    return PayloadTooLarge(
        f"{what}{stated} at most {limit} bytes are accepted.",
        code=code,
        details={"limit_bytes": limit},
    )


def check_body_length(length: int, limits: UploadLimits, *, multipart: bool) -> None:
    """413 for a declared body over the view's limit, before anything is read."""
    limit = limits.body_bytes()
    if length > limit + (MULTIPART_SLACK_BYTES if multipart else 0):
        raise too_large("The request body", length, limit)


def read_body(stream: BinaryIO | None, length: int, limit: int, what: str) -> bytes:
    """The whole body as bytes, at most `limit` of them (413 from the declared length, before
    reading; the stream never yields more than the declared length)."""
    if length > limit:
        raise too_large(what, length, limit, code="input_too_large")
    if stream is None or length <= 0:
        return b""
    parts, size = [], 0
    while size < length and (chunk := stream.read(min(_CHUNK, length - size))):
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


class CappedUploadHandler(FileUploadHandler):
    """First in the chain of upload handlers: stops a multipart upload as soon as one file
    is over its field's limit (413), before the handlers behind it keep or spool more."""

    def __init__(self, request: Any, limits: UploadLimits) -> None:
        super().__init__(request)
        self.limits = limits
        self.limit = 0
        self.size = 0

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, *args, **kwargs)
        self.limit = self.limits.file_bytes(field_name)
        self.size = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.size += len(raw_data)
        if self.size > self.limit:
            raise too_large(
                f"The file in field '{self.field_name}'", None, self.limit, code="input_too_large"
            )
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the handlers behind this one make the file
