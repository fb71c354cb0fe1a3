"""The request-parsing layer every DRF view shares (DEFAULT_CONTENT_NEGOTIATION_CLASS): the
parser a request's Content-Type selects is wrapped, so that for every view at once

- the body's declared size is checked against the view's limit before a byte is read,
  and each multipart file against its field's limit while it arrives (apps/core/uploads.py);
- a JSON body is read whole only up to DATA_UPLOAD_MAX_MEMORY_SIZE;
- text (form fields, file names, JSON strings and keys) with a NUL character or a lone
  surrogate is refused with 400 invalid_text, before any view or database sees it.

Binary bodies (a raw image, the Open Inference Protocol's binary tensors) are not text and
are not checked. The path and the query string are checked by CleanTextMiddleware.
"""

import io
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.utils.datastructures import MultiValueDict
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser, DataAndFiles, JSONParser, MultiPartParser

from apps.core.http import content_length
from apps.core.text import check_clean_text
from apps.core.uploads import CappedUploadHandler, check_body_length, limits_of, read_body, too_large

# Bytes whose presence in a JSON body means a string may hold a NUL or a lone surrogate:
# a raw NUL (the lenient parser allows control characters) or any \u escape. Bodies with
# neither (nearly all) are not walked.
_JSON_SUSPECTS = (b"\x00", b"\\u")


class CheckedContentNegotiation(DefaultContentNegotiation):
    def select_parser(self, request: Any, parsers: Iterable[BaseParser]) -> BaseParser | None:
        parser = super().select_parser(request, parsers)
        return None if parser is None else CheckedParser(parser)


class CheckedParser(BaseParser):
    """A view's own parser, with the shared size limits and text checks around it."""

    def __init__(self, inner: BaseParser) -> None:
        self.inner = inner
        self.media_type = inner.media_type

    def parse(
        self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        context = parser_context or {}
        request, view = context.get("request"), context.get("view")
        limits = limits_of(view)
        multipart = isinstance(self.inner, MultiPartParser)
        length = content_length(request) if request is not None else 0
        check_body_length(length, limits, multipart=multipart)
        if isinstance(self.inner, JSONParser):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            if length > limit:
                raise too_large("The JSON body", length, limit)
            body = read_body(stream, length, limit, "The JSON body")
            document = self.inner.parse(io.BytesIO(body), media_type, parser_context)
            if any(suspect in body for suspect in _JSON_SUSPECTS):
                _check_json(document)
            return document
        if multipart and request is not None:
            django_request = getattr(request, "_request", request)
            django_request.upload_handlers = [
                CappedUploadHandler(django_request, limits),
                *django_request.upload_handlers,
            ]
        parsed = self.inner.parse(stream, media_type, parser_context)
        if isinstance(parsed, DataAndFiles):
            _check_form(parsed.data, parsed.files, limits)
        elif isinstance(parsed, MultiValueDict):  # FormParser: a QueryDict
            _check_form(parsed, MultiValueDict(), limits)
        return parsed


def _check_form(data: MultiValueDict, files: MultiValueDict, limits: Any) -> None:
    for key, values in data.lists():
        check_clean_text(key, "a form field's name")
        for value in values:
            if isinstance(value, str):
                check_clean_text(value, f"form field '{_printable(key)}'")
    for key, uploads in files.lists():
        check_clean_text(key, "a file field's name")
        limit = limits.file_bytes(key)
        for upload in uploads:
            check_clean_text(upload.name or "", f"a file name in field '{_printable(key)}'")
            if upload.size is not None and upload.size > limit:  # the in-memory path of small bodies
                raise too_large(
                    f"The file in field '{_printable(key)}'", upload.size, limit, "input_too_large"
                )


def _check_json(value: Any) -> None:
    """Every string (keys too) in a parsed JSON document, without recursion."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            check_clean_text(item, "a string in the JSON body")
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def _printable(name: str) -> str:
    return name.replace("\x00", "")[:100]
