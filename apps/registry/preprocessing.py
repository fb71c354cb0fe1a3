"""The preprocessing a version declares, and the labels of a classifier.

A preprocessing config tells the prediction API how to turn an image into the
model's input tensor: pixel values x in 0..255 become (x * scale - mean) / std.
"""

import json
from typing import Any

from rest_framework import serializers

from apps.core.exceptions import InvalidInput
from apps.core.text import check_clean_text

MAX_LABELS = 100_000
MAX_LABEL_LENGTH = 500


class PreprocessingConfigSerializer(serializers.Serializer):
    color_mode = serializers.ChoiceField(choices=["RGB", "L"], default="RGB")
    resize = serializers.IntegerField(min_value=1, max_value=8192, required=False, allow_null=True)
    resize_mode = serializers.ChoiceField(choices=["shorter_side", "exact"], default="shorter_side")
    crop = serializers.IntegerField(min_value=1, max_value=8192, required=False, allow_null=True)
    scale = serializers.FloatField(default=1.0)
    mean = serializers.ListField(child=serializers.FloatField(), min_length=1, max_length=4, default=[0.0])
    std = serializers.ListField(child=serializers.FloatField(), min_length=1, max_length=4, default=[1.0])
    channel_order = serializers.ChoiceField(choices=["RGB", "BGR"], default="RGB")
    layout = serializers.ChoiceField(choices=["NCHW", "NHWC"], default="NCHW")
    dtype = serializers.ChoiceField(choices=["float32", "float16", "uint8", "int8"], default="float32")
    interpolation = serializers.ChoiceField(choices=["nearest", "bilinear", "bicubic"], default="bilinear")
    softmax = serializers.BooleanField(default=False)
    # What to do with NaN or ±Inf in tensor inputs: refuse them (422) or pass them to the model.
    non_finite = serializers.ChoiceField(choices=["reject", "allow"], default="reject")
    # Decode a large JPEG at 1/2, 1/4 or 1/8 scale (never below twice `resize`), and reduce
    # other formats likewise before the resize: a 12 MP JPEG preprocesses 2-4x faster, the
    # demo model's answers within 0.025 in softmax. On for new versions; a stored config
    # without the key (versions from before it) decodes in full. See
    # docs/decisions/0013-fast-jpeg-decode.md.
    fast_decode = serializers.BooleanField(default=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        initial = getattr(self, "initial_data", None) or {}
        unknown = set(initial) - set(self.fields)
        if unknown:
            raise serializers.ValidationError(f"Unknown keys: {', '.join(sorted(unknown))}.")
        # .get: as a nested field of a PATCH serializer, defaults are not filled in.
        if any(value == 0 for value in attrs.get("std", [])):
            raise serializers.ValidationError({"std": "Must not contain 0."})
        channels = 3 if attrs.get("color_mode", "RGB") == "RGB" else 1
        for key in ("mean", "std"):
            if key in attrs and len(attrs[key]) not in (1, channels):
                raise serializers.ValidationError({key: f"Give 1 or {channels} values."})
        return attrs


def parse_preprocessing(raw: Any) -> dict[str, Any]:
    """Validate a preprocessing config (a dict, or JSON text/bytes); {} means none."""
    if raw in (None, "", b"", {}):
        return {}
    if isinstance(raw, bytes | str):
        try:
            raw = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise InvalidInput(
                f"Preprocessing is not valid JSON: {exc}", code="invalid_preprocessing"
            ) from exc
    if not isinstance(raw, dict):
        raise InvalidInput("Preprocessing must be a JSON object.", code="invalid_preprocessing")
    serializer = PreprocessingConfigSerializer(data=raw)
    if not serializer.is_valid():
        raise InvalidInput(
            "Invalid preprocessing config.", code="invalid_preprocessing", details=serializer.errors
        )
    return dict(serializer.validated_data)


def parse_labels(raw: Any) -> list[str]:
    """Labels from a JSON list, or text with one label per line (blank lines ignored)."""
    if raw in (None, "", b""):
        return []
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInput("Labels must be UTF-8 text.", code="invalid_labels") from exc
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                raw = json.loads(text)
            except (ValueError, RecursionError) as exc:
                raise InvalidInput(f"Labels are not a valid JSON list: {exc}", code="invalid_labels") from exc
        else:
            raw = [line.strip() for line in text.splitlines() if line.strip()]
    if not isinstance(raw, list) or not all(isinstance(label, str) for label in raw):
        raise InvalidInput("Labels must be a list of strings.", code="invalid_labels")
    for label in raw:  # from a file or a JSON escape: a NUL or lone surrogate cannot be stored
        check_clean_text(label, "a label")
    if len(raw) > MAX_LABELS or any(len(label) > MAX_LABEL_LENGTH for label in raw):
        raise InvalidInput(
            f"At most {MAX_LABELS} labels of at most {MAX_LABEL_LENGTH} characters.", code="invalid_labels"
        )
    return raw
