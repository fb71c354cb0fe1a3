"""Text fields take text: a JSON number where the schema says string is refused (400), as
the schema promises. DRF's CharField (and SlugField, EmailField, URLField... built on it)
turns `0` into `"0"` by default, so `{"name": 0}` created a model named "0"; the fuzzing
stage (tests/fuzz/) reports that as a schema-violating request accepted. Form fields and
query parameters are always text, so only JSON bodies are affected."""

from typing import Any

from rest_framework import fields


def _text_only(self: fields.CharField, data: Any) -> str:
    if not isinstance(data, str):
        self.fail("invalid")
    return data.strip() if self.trim_whitespace else data


def install() -> None:
    """Called once, from CoreConfig.ready()."""
    fields.CharField.to_internal_value = _text_only  # type: ignore[method-assign]
