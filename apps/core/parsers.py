"""Parsers of the prediction doors: a multipart parser for small bodies (on the hot path of
every multipart prediction), lenient JSON, and a raw image body."""

import codecs
import io
from collections.abc import Mapping
from typing import Any

import multipart
from django.conf import settings
from django.core.exceptions import TooManyFieldsSent, TooManyFilesSent
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.http import QueryDict
from django.http.multipartparser import MultiPartParser as DjangoMultiPartParser
from django.utils.datastructures import MultiValueDict
from rest_framework.parsers import BaseParser, DataAndFiles, JSONParser, MultiPartParser

from apps.core.http import content_length
from apps.core.uploads import limits_of, read_body


class _Unusual(Exception):
    """Something the in-memory path does not handle the way Django does."""


class SmallMultiPartParser(MultiPartParser):
    """multipart/form-data: ordinary bodies up to FILE_UPLOAD_MAX_MEMORY_SIZE are parsed in
    memory with the `multipart` library; everything else goes to Django's parser.

    Django's parser streams through upload handlers in 64 KiB chunks. For a one-photo
    request that machinery costs about 0.18 ms of CPU, against 0.03 ms here
    (docs/performance.md). The result has the same shape: a QueryDict of fields and a
    MultiValueDict of `InMemoryUploadedFile`s, with Django's limits on the number of
    fields and files and its rules for file names.

    Bigger bodies, and any body this path would read differently from Django (one the
    library refuses, a part that is not plain `form-data`, an RFC 2231 `filename*`, a
    `Content-Transfer-Encoding`, a charset that is not a text encoding), are handed to
    Django's parser, so the answer never depends on which path ran.
    """

    def parse(
        self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        parser_context = parser_context or {}
        meta = parser_context["request"].META
        try:
            length = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        boundary = multipart.parse_options_header(meta.get("CONTENT_TYPE", ""))[1].get("boundary", "")
        limit = min(settings.FILE_UPLOAD_MAX_MEMORY_SIZE, settings.DATA_UPLOAD_MAX_MEMORY_SIZE or length)
        encoding = parser_context.get("encoding") or settings.DEFAULT_CHARSET
        if not 0 < length <= limit or not boundary or stream is None or not _is_text_encoding(encoding):
            return super().parse(stream, media_type, parser_context)
        body = stream.read(length)
        try:
            return self._parse(body, boundary, encoding)
        except (_Unusual, multipart.MultipartError):
            return super().parse(io.BytesIO(body), media_type, parser_context)

    @staticmethod
    def _parse(body: bytes, boundary: str, encoding: str) -> DataAndFiles:
        data = QueryDict(mutable=True, encoding=encoding)
        files: MultiValueDict[str, InMemoryUploadedFile] = MultiValueDict()
        max_fields = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        max_files = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        segment: multipart.MultipartSegment | None = None
        chunks: list[bytes] = []
        fields, file_count = 0, 0
        with multipart.PushMultipartParser(boundary, content_length=len(body)) as parser:
            for event in parser.parse(body):
                if isinstance(event, multipart.MultipartSegment):
                    _check_ordinary(event)
                    segment, chunks = event, []
                elif event:
                    chunks.append(event)
                elif segment is not None:  # None: the end of the segment
                    content = b"".join(chunks)
                    name = segment.name.strip()
                    if segment.filename is None:
                        fields += 1
                        # None turns the limit off (Django's docs); the stub says int.
                        if max_fields is not None and fields > max_fields:  # type: ignore[redundant-expr]
                            raise TooManyFieldsSent(
                                "The number of fields exceeded DATA_UPLOAD_MAX_NUMBER_FIELDS."
                            )
                        # As Django does: the request's encoding, undecodable bytes replaced.
                        data.appendlist(name, content.decode(encoding, errors="replace"))
                        continue
                    file_count += 1
                    if max_files is not None and file_count > max_files:
                        raise TooManyFilesSent("The number of files exceeded DATA_UPLOAD_MAX_NUMBER_FILES.")
                    # Django's own rules: no path, no unprintable characters; a file part
                    # without a usable name (an empty file input) is skipped.
                    file_name = DjangoMultiPartParser.sanitize_file_name(None, segment.filename)  # type: ignore[arg-type]
                    if not file_name:
                        continue
                    upload = InMemoryUploadedFile(
                        file=io.BytesIO(content),
                        field_name=name,
                        name=file_name,
                        content_type=segment.content_type or "",
                        size=len(content),
                        charset=segment.charset,
                    )
                    files.appendlist(name, upload)
        data._mutable = False
        return DataAndFiles(data, files)


def _check_ordinary(segment: multipart.MultipartSegment) -> None:
    if segment.disposition != "form-data" or segment.name is None:
        raise _Unusual("not a form-data part")
    for header, value in segment.headerlist:
        if header == "Content-Transfer-Encoding":
            raise _Unusual("a transfer encoding")
        if header == "Content-Disposition" and "filename*" in value:
            raise _Unusual("an RFC 2231 file name")


def _is_text_encoding(name: str) -> bool:
    try:
        return codecs.lookup(name)._is_text_encoding
    except LookupError:
        return False


class LenientJSONParser(JSONParser):
    """Accepts NaN and Infinity in JSON numbers; the version's policy decides what to do with them."""

    strict = False


class RawImageParser(BaseParser):
    """A request body that is one image file (`Content-Type: image/jpeg`, …), as with
    `curl --data-binary @photo.jpg`: no multipart framing to parse."""

    media_type = "image/*"

    # request.data may be any value a parser returns (DRF keeps it as it is); the stubs allow
    # only mappings.
    def parse(  # type: ignore[override]
        self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> bytes:
        # The body is one input: over the view's per-input limit it is refused from its
        # Content-Length, before a byte is read (apps/core/uploads.py).
        context = parser_context or {}
        request = context.get("request")
        length = content_length(request) if request is not None else 0
        limit = limits_of(context.get("view")).file_bytes(None)
        return read_body(stream, length, limit, "The image body")
