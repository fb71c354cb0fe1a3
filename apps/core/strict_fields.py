"""Text fields take text, and boolean fields JSON booleans: a JSON number where the schema
says string or boolean is refused (400), as the schema promises. DRF's CharField (and the
SlugField, EmailField, URLField... built on it) turned `0` into `"0"`, so `{"name": 0}`
created a model named "0", and its BooleanField took `0`, `1` or "yes"; the fuzzing stage
(tests/fuzz/) reports such requests as schema-violating requests accepted. Form fields and
query parameters are text, and keep DRF's reading."""

from typing import Any

from django.http import QueryDict
from rest_framework import fields


def _text_only(self: fields.CharField, data: Any) -> str:
    if not isinstance(data, str):
        self.fail("invalid")
    return data.strip() if self.trim_whitespace else data


_lenient_boolean = fields.BooleanField.to_internal_value


def _boolean(self: fields.BooleanField, data: Any) -> bool:
    """JSON `true` or `false` only (DRF also took 0, 1, "yes", "on"...); a form keeps DRF's
    words, since in a form every value is text."""
    if isinstance(getattr(self.root, "initial_data", None), QueryDict):
        return _lenient_boolean(self, data)
    if not isinstance(data, bool):
        self.fail("invalid", input=data)
    return data


def install() -> None:
    """Called once, from CoreConfig.ready()."""
    # Patched on purpose; each replacement takes its own field class as `self`.
    fields.CharField.to_internal_value = _text_only  # type: ignore[method-assign, assignment]
    fields.BooleanField.to_internal_value = _boolean  # type: ignore[method-assign, assignment]
