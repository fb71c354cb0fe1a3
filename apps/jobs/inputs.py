"""What a job submission carries, as a stream of inputs: multipart files, archives
(zip or tar, optionally compressed), base64 images in JSON, or tensors in JSON.

Archives are read member by member with every size capped as it is read (the
sizes an archive declares can lie), so a zip bomb costs at most the limits.
Members are never extracted by name: a path-traversal entry (`../x`, `/etc/x`)
or a link refuses the whole archive, to say clearly that it is unsafe.
"""

import json
import lzma
import posixpath
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings

from apps.core.exceptions import InvalidInput, PayloadTooLarge
from apps.core.text import client_text
from apps.inference.inputs import decode_base64_image

_CHUNK = 1024 * 1024


@dataclass
class JobInput:
    data: bytes
    filename: str = ""
    content_type: str = ""


class Budget:
    """The job's limits, spent as inputs are read: item count and total bytes."""

    def __init__(self) -> None:
        self.items = 0
        self.bytes = 0

    def take(self, size: int) -> None:
        self.items += 1
        self.bytes += size
        if self.items > settings.JOB_MAX_ITEMS:
            raise PayloadTooLarge(
                f"A job takes at most {settings.JOB_MAX_ITEMS} inputs.",
                code="too_many_items",
                details={"max_items": settings.JOB_MAX_ITEMS},
            )
        if self.bytes > settings.JOB_MAX_BYTES:
            raise PayloadTooLarge(
                f"A job's inputs may total at most {settings.JOB_MAX_BYTES} bytes.",
                code="job_too_large",
                details={"limit_bytes": settings.JOB_MAX_BYTES},
            )


def item_too_large(name: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Input '{name}' is over the per-input limit of {settings.JOB_MAX_ITEM_BYTES} bytes.",
        code="input_too_large",
        details={"filename": name, "limit_bytes": settings.JOB_MAX_ITEM_BYTES},
    )


def read_capped(stream: IO[bytes], name: str) -> bytes:
    """Read at most JOB_MAX_ITEM_BYTES; more is an error (whatever size was declared)."""
    limit = settings.JOB_MAX_ITEM_BYTES
    parts, size = [], 0
    while chunk := stream.read(min(_CHUNK, limit + 1 - size)):
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            raise item_too_large(name)
    return b"".join(parts)


def uploaded_files(files: Iterable[Any]) -> Iterator[JobInput]:
    for upload in files:
        if upload.size is not None and upload.size > settings.JOB_MAX_ITEM_BYTES:
            raise item_too_large(upload.name)
        yield JobInput(
            data=read_capped(upload, upload.name),
            filename=upload.name or "",
            content_type=upload.content_type,
        )


def _unsafe(name: str, reason: str) -> InvalidInput:
    return InvalidInput(
        f"The archive is unsafe: entry '{name[:200]}' {reason}.",
        code="unsafe_archive",
        details={"entry": name[:200]},
    )


def _check_member_name(name: str) -> None:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise _unsafe(name, "has an absolute path")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise _unsafe(name, "climbs out of the archive (..)")


def _skipped(name: str) -> bool:
    """Directory entries and operating-system litter (macOS resource forks, dotfiles)."""
    base = posixpath.basename(name.rstrip("/"))
    return not base or base.startswith(".") or "__MACOSX/" in name


def archive_inputs(upload: Any) -> Iterator[JobInput]:
    """The files inside one uploaded zip or tar archive, in archive order."""
    name = getattr(upload, "name", "") or "archive"
    head = upload.read(8)
    upload.seek(0)
    if head.startswith(b"PK"):
        yield from _zip_inputs(upload)
        return
    try:
        archive = tarfile.open(fileobj=upload, mode="r:*")  # noqa: SIM115 (closed by the with below)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidInput(
            f"'{name}' is not a zip or tar archive this server can read.", code="invalid_archive"
        ) from exc
    with archive:
        yield from _tar_inputs(archive)


def _zip_inputs(upload: Any) -> Iterator[JobInput]:
    try:
        archive = zipfile.ZipFile(upload)
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidInput("The zip archive is corrupt.", code="invalid_archive") from exc
    with archive:
        if len(members) > settings.JOB_MAX_ITEMS * 2:
            raise PayloadTooLarge("The archive has too many entries.", code="too_many_items")
        for info in members:
            _check_member_name(info.filename)
            if info.is_dir() or _skipped(info.filename):
                continue
            if info.file_size > settings.JOB_MAX_ITEM_BYTES:
                raise item_too_large(info.filename)
            try:
                with archive.open(info) as member:
                    data = read_capped(member, info.filename)
            except (
                zipfile.BadZipFile,
                OSError,
                ValueError,
                EOFError,
                NotImplementedError,
                RuntimeError,  # an encrypted member
                zlib.error,
                lzma.LZMAError,
            ) as exc:
                raise InvalidInput(
                    f"The zip archive is corrupt at '{info.filename[:200]}'.", code="invalid_archive"
                ) from exc
            yield JobInput(data=data, filename=clean_name(info.filename))


def _tar_inputs(archive: tarfile.TarFile) -> Iterator[JobInput]:
    """Members one by one, without keeping their headers (a million empty entries must
    not fill memory); entries and skipped bytes are counted against the job's limits too."""
    entries = skipped = 0
    try:
        while (member := archive.next()) is not None:
            # tarfile keeps every header it reads; this reader needs none. (typeshed leaves
            # the attribute out.)
            archive.members = []  # type: ignore[attr-defined]
            entries += 1
            if entries > settings.JOB_MAX_ITEMS * 2:
                raise PayloadTooLarge("The archive has too many entries.", code="too_many_items")
            _check_member_name(member.name)
            if member.size > settings.JOB_MAX_ITEM_BYTES:
                raise item_too_large(member.name)
            if member.isdir() or _skipped(member.name):
                skipped += member.size
                if skipped > settings.JOB_MAX_BYTES:
                    raise PayloadTooLarge("The archive is too large.", code="job_too_large")
                continue
            if not member.isfile():
                raise _unsafe(member.name, "is a link or a device, not a file")
            stream = archive.extractfile(member)
            if stream is None:
                continue
            yield JobInput(data=read_capped(stream, member.name), filename=clean_name(member.name))
        _check_tar_end(archive)
    except (tarfile.TarError, OSError, EOFError, zipfile.BadZipFile, zlib.error, lzma.LZMAError) as exc:
        raise InvalidInput("The tar archive is corrupt.", code="invalid_archive") from exc


def _check_tar_end(archive: tarfile.TarFile) -> None:
    """tarfile takes a damaged header, or a tar cut off between members, for the end of the
    archive, and never reads a compressed stream to its checksum: a damaged archive would
    lose members silently. A real end is a block of zeros, and the stream reads to its end."""
    archive.fileobj.seek(archive.offset)
    end = archive.fileobj.read(tarfile.BLOCKSIZE)
    if len(end) < tarfile.BLOCKSIZE or end.strip(b"\0"):
        raise InvalidInput("The tar archive is truncated or corrupt.", code="invalid_archive")
    left = settings.JOB_MAX_BYTES  # the padding after the end, read (and checksummed) in chunks
    while chunk := archive.fileobj.read(1 << 20):
        left -= len(chunk)
        if left < 0:
            raise PayloadTooLarge("The archive is too large.", code="job_too_large")


def clean_name(name: str) -> str:
    """A file name as text a database takes: valid UTF-8 (names in other encodings come
    with replacement characters), no NUL, at most 255 characters."""
    return client_text(name, 255)


def parsed_images(images: list[Any]) -> Iterator[JobInput]:
    """Images a predict request already read (its `ImageInput`s), held to the per-input limit
    as files sent to /jobs/ are."""
    for index, image in enumerate(images):
        if len(image.data) > settings.JOB_MAX_ITEM_BYTES:
            raise item_too_large(image.filename or f"images[{index}]")
        yield JobInput(data=image.data, filename=image.filename, content_type=image.content_type)


def base64_images(values: list[Any]) -> Iterator[JobInput]:
    for index, value in enumerate(values):
        data, content_type = decode_base64_image(value, index)  # as the synchronous predict does
        if len(data) > settings.JOB_MAX_ITEM_BYTES:
            raise item_too_large(f"images[{index}]")
        yield JobInput(data=data, content_type=content_type)


def tensor_inputs(values: list[Any]) -> Iterator[JobInput]:
    """One item per entry: its named tensors, stored as JSON and checked when the item runs."""
    for index, value in enumerate(values):
        if not isinstance(value, dict) or not value:
            raise InvalidInput(f"inputs[{index}] must be an object of named tensors.", code="invalid_tensor")
        try:  # a lone surrogate or a NUL would be refused by the database much later, on the worker
            text = json.dumps(value, allow_nan=True, ensure_ascii=False)
            text.encode("utf-8")
        except (UnicodeEncodeError, ValueError, RecursionError) as exc:
            raise InvalidInput(f"inputs[{index}] is not valid text.", code="invalid_tensor") from exc
        if "\\u0000" in text:
            raise InvalidInput(f"inputs[{index}] contains a NUL character.", code="invalid_tensor")
        yield JobInput(
            data=json.dumps(value, allow_nan=True).encode(),
            filename=f"inputs[{index}]",
            content_type="application/json",
        )


def chain_limited(sources: Iterable[Iterator[JobInput]], budget: Budget) -> Iterator[JobInput]:
    for source in sources:
        for item in source:
            budget.take(len(item.data))
            yield item
