"""The API's JSON renderer."""

from typing import Any

from rest_framework.renderers import JSONRenderer as BaseJSONRenderer


class JSONRenderer(BaseJSONRenderer):
    """DRF's renderer writes UTF-8 and fails on a lone surrogate (a client's "\\ud800" echoed
    back in an error's details, say), which would turn a 4xx into a 500. Such a body is
    written with ASCII escapes instead; every other body is unchanged."""

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            # This instance renders this one response. (The stubs call the attribute a ClassVar;
            # DRF reads it from the instance.)
            self.ensure_ascii = True  # type: ignore[misc]
            return super().render(data, accepted_media_type, renderer_context)
