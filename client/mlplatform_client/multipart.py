"""The multipart/form-data body of a job submission, written to a file rather than memory."""

import mimetypes
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import IO

CHUNK_SIZE = 64 * 1024

# mimetypes knows most of these, but its answers vary with the platform's tables.
_IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".gif": "image/gif",
}


def content_type_for(path: Path) -> str:
    known = _IMAGE_TYPES.get(path.suffix.lower())
    return known or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _quote_disposition(value: str) -> bytes:
    # What browsers do (HTML spec, multipart/form-data): UTF-8, with `"`, CR and LF percent-encoded.
    escaped = value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    return escaped.encode()


def write_multipart(
    out: IO[bytes],
    boundary: str,
    fields: Sequence[tuple[str, str]],
    files: Sequence[tuple[str, str, Path]],
) -> None:
    """Write a multipart/form-data body: `fields` are (name, value), `files` (name, filename, path)."""
    dash = b"--" + boundary.encode("ascii")
    for name, value in fields:
        out.write(dash + b"\r\n")
        out.write(b'Content-Disposition: form-data; name="' + _quote_disposition(name) + b'"\r\n\r\n')
        out.write(value.encode() + b"\r\n")
    for name, filename, path in files:
        out.write(dash + b"\r\n")
        out.write(
            b'Content-Disposition: form-data; name="'
            + _quote_disposition(name)
            + b'"; filename="'
            + _quote_disposition(filename)
            + b'"\r\n'
        )
        out.write(b"Content-Type: " + content_type_for(path).encode("ascii") + b"\r\n\r\n")
        with path.open("rb") as source:
            shutil.copyfileobj(source, out, CHUNK_SIZE)
        out.write(b"\r\n")
    out.write(dash + b"--\r\n")
