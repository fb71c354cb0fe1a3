"""Turning request inputs into model tensors. No ORM imports.

Images: decoded with Pillow (JPEG, PNG, WebP, BMP, GIF first frame), EXIF
orientation applied, then the version's preprocessing config (see
apps/registry/preprocessing.py): colour mode, resize, crop, (x * scale - mean) / std,
channel order, layout and dtype. Tensors: named inputs as nested lists, flat
lists with a shape, or base64 little-endian bytes with dtype and shape.
"""

import base64
import binascii
import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from apps.core.exceptions import PayloadTooLarge, UnprocessableInput
from apps.core.text import client_text

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "GIF", "MPO"}  # MPO: multi-picture JPEG from phones
_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
_DTYPES = {
    "float32": np.float32,
    "float": np.float32,
    "float16": np.float16,
    "float64": np.float64,
    "double": np.float64,
    "int64": np.int64,
    "int32": np.int32,
    "int8": np.int8,
    "uint8": np.uint8,
    "bool": np.bool_,
}


@dataclass
class DecodedImage:
    image: Image.Image
    format: str
    width: int
    height: int


def decode_image(data: bytes, *, max_pixels: int) -> DecodedImage:
    """Decode image bytes, refusing pixel bombs from the header, before any pixel is decoded."""
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise UnprocessableInput("The input is not an image Pillow can read.", code="invalid_image") from exc
    except (OSError, ValueError) as exc:
        raise UnprocessableInput(f"The image cannot be read: {exc}", code="invalid_image") from exc
    if image.format not in ALLOWED_FORMATS:
        raise UnprocessableInput(
            f"Image format {image.format} is not supported; send JPEG, PNG, WebP, BMP or GIF.",
            code="unsupported_image_format",
        )
    width, height, fmt = *image.size, image.format
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"The image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}.",
            code="image_too_large",
            details={"width": width, "height": height, "max_pixels": max_pixels},
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.seek(0)  # GIF and other animations: the first frame
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # no copy of every image without EXIF
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(str(exc), code="image_too_large") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or corrupt data
        raise UnprocessableInput(f"The image is corrupt or truncated: {exc}", code="invalid_image") from exc
    return DecodedImage(image=image, format=fmt or "", width=width, height=height)


def _check_resized(size: tuple[int, int], max_pixels: int | None) -> None:
    """A very thin image passes the pixel limit but resizing its short side up would make a
    huge one (1x40000 to 224 short side: 224x8960000): refuse it before allocating."""
    if max_pixels is not None and size[0] * size[1] > max_pixels:
        raise PayloadTooLarge(
            f"Preprocessing would make a {size[0]}x{size[1]} image; the limit is {max_pixels} pixels.",
            code="image_too_large",
            details={"resized_width": size[0], "resized_height": size[1], "max_pixels": max_pixels},
        )


def _to_8_bits(image: Image.Image) -> Image.Image:
    """A 16-bit (I;16…) or 32-bit (I) greyscale image as 8-bit L, its range scaled down."""
    values = np.asarray(image, dtype=np.uint32 if image.mode == "I" else np.uint16).astype(np.uint32)
    if image.mode == "I" and values.size and values.max() <= 255:
        return Image.fromarray(values.astype(np.uint8), "L")
    return Image.fromarray((values >> 8).clip(0, 255).astype(np.uint8), "L")


def image_to_array(
    image: Image.Image, config: dict[str, Any], *, max_pixels: int | None = None
) -> np.ndarray:
    """One preprocessed image as an array in the configured layout, without a batch axis."""
    mode = config.get("color_mode", "RGB")
    if image.mode.startswith("I"):  # 16- or 32-bit greyscale: convert() would clip, not scale
        image = _to_8_bits(image)
    if image.mode != mode:
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image)  # transparent pixels on white
        image = image.convert(mode)
    resample = _RESAMPLING[config.get("interpolation", "bilinear")]
    resize = config.get("resize")
    if resize:
        width, height = image.size
        if config.get("resize_mode", "shorter_side") == "exact":
            size = (resize, resize)
        elif width <= height:  # the shorter side becomes `resize` (rounding as torchvision)
            size = (resize, int(resize * height / width))
        else:
            size = (int(resize * width / height), resize)
        if size != image.size:
            _check_resized(size, max_pixels)
            image = image.resize(size, resample)
    crop = config.get("crop")
    if crop:
        width, height = image.size
        if crop > width or crop > height:  # pad with black around it, at its own size
            padded = (max(crop, width), max(crop, height))
            _check_resized(padded, max_pixels)
            canvas = Image.new(image.mode, padded)
            canvas.paste(image, ((padded[0] - width) // 2, (padded[1] - height) // 2))
            image, (width, height) = canvas, padded
        # The offsets round as torchvision's center_crop does.
        left, top = round((width - crop) / 2.0), round((height - crop) / 2.0)
        image = image.crop((left, top, left + crop, top + crop))

    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    dtype = _DTYPES[config.get("dtype", "float32")]
    mean = np.asarray(config.get("mean", [0.0]), dtype=np.float32)
    std = np.asarray(config.get("std", [1.0]), dtype=np.float32)
    array = (array.astype(np.float32) * np.float32(config.get("scale", 1.0)) - mean) / std
    if np.issubdtype(dtype, np.integer):  # rounded and held to the type's range, never wrapped
        limits = np.iinfo(dtype)
        array = np.clip(np.rint(array), limits.min, limits.max)
    if config.get("channel_order", "RGB") == "BGR" and array.shape[2] == 3:
        array = array[:, :, ::-1]
    if config.get("layout", "NCHW") == "NCHW":
        array = array.transpose(2, 0, 1)
    return np.ascontiguousarray(array, dtype=dtype)


# --- Tensors ----------------------------------------------------------------------------------


def _expected_dtype(dtype_name: str) -> Any:
    return _DTYPES.get(dtype_name)


def parse_tensor(name: str, value: Any, expected_dtype: str) -> np.ndarray:
    """A tensor from JSON: a nested list, {"data": [...], "shape": [...]}, or
    {"b64": "...", "dtype": "float32", "shape": [...]} (little-endian bytes)."""
    dtype = _expected_dtype(expected_dtype)
    if dtype is None:
        raise UnprocessableInput(
            f"Input '{name}' has type {expected_dtype}, which the API does not accept.", code="invalid_tensor"
        )
    try:
        if isinstance(value, dict) and "b64" in value:
            given = value.get("dtype", expected_dtype)
            given_dtype = _expected_dtype(given)
            if given_dtype is None:
                raise UnprocessableInput(f"Input '{name}': unknown dtype {given!r}.", code="invalid_tensor")
            raw = base64.b64decode(value["b64"], validate=True)
            array = np.frombuffer(raw, dtype=np.dtype(given_dtype).newbyteorder("<"))
            array = array.reshape(_shape(name, value["shape"]))
        elif isinstance(value, dict) and "data" in value:
            array = np.asarray(value["data"])
            if "shape" in value:
                array = array.reshape(_shape(name, value["shape"]))
        else:
            array = np.asarray(value)
    except (binascii.Error, TypeError, KeyError) as exc:
        raise UnprocessableInput(
            f"Input '{name}' is not a valid tensor: {exc}", code="invalid_tensor"
        ) from exc
    except ValueError as exc:  # ragged lists, wrong byte counts for the shape
        raise UnprocessableInput(
            f"Input '{name}' is not a valid tensor: {exc}", code="invalid_tensor"
        ) from exc
    if array.dtype == object or array.dtype.kind in "USO":
        raise UnprocessableInput(f"Input '{name}' must hold numbers.", code="invalid_tensor")
    if not _castable(array, dtype):
        hint = ""
        if np.issubdtype(dtype, np.integer) and array.dtype.kind == "f":
            hint = " (floats are accepted only as whole numbers up to 2**53, which they hold exactly)"
        raise UnprocessableInput(
            f"Input '{name}' expects {np.dtype(dtype).name}, got {array.dtype.name} values{hint}.",
            code="invalid_tensor",
            details={"input": name, "expected_dtype": np.dtype(dtype).name, "got_dtype": array.dtype.name},
        )
    _check_range(name, array, dtype)
    return array.astype(dtype, copy=False)


def _shape(name: str, shape: Any) -> list[int]:
    """A shape as sent: a list of sizes, each a non-negative integer (NumPy would read any
    negative size as "work it out")."""
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise UnprocessableInput(
            f"Input '{name}': 'shape' must be a list of non-negative integers, got {shape!r}.",
            code="invalid_tensor",
            details={"input": name},
        )
    return shape


def _check_range(name: str, array: np.ndarray, dtype: Any) -> None:
    """Values must fit the input's type: a cast would wrap integers (300 → 44 in uint8)
    and turn large floats into Inf."""
    target = np.dtype(dtype)
    if array.size == 0 or target.kind == "b" or array.dtype.kind == "b" or array.dtype == target:
        return
    values = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    if values.size == 0:
        return
    low, high = values.min(), values.max()
    if target.kind == "f":
        with np.errstate(over="ignore"):
            fits = not np.isinf(values.astype(target)).any()
        limits = np.finfo(target)
    else:
        limits = np.iinfo(target)
        if array.dtype.kind == "f":  # float(max) + 1 is a power of two: exact, unlike max itself
            fits = float(limits.min) <= low and high < float(limits.max) + 1
        else:
            fits = limits.min <= low and high <= limits.max
    if not fits:
        raise UnprocessableInput(
            f"Input '{name}' expects {target.name}, whose values lie in [{limits.min}, {limits.max}]; "
            f"got values from {low} to {high}.",
            code="invalid_tensor",
            details={
                "input": name,
                "expected_dtype": target.name,
                "got_min": float(low),
                "got_max": float(high),
            },
        )


def _castable(array: np.ndarray, dtype: Any) -> bool:
    """Ints into floats are fine; floats into ints only when they hold whole numbers that a
    float holds exactly (up to 2**53: past it, 2**60 + 1 would already have become 2**60).
    Booleans only into booleans."""
    if array.dtype == dtype:
        return array.dtype.kind in "biuf"
    if np.issubdtype(dtype, np.floating):
        return array.dtype.kind in "iuf"
    if np.issubdtype(dtype, np.integer):
        if array.dtype.kind in "iu":
            return True
        return array.dtype.kind == "f" and bool(
            np.all(np.isfinite(array)) and np.all(array == np.round(array)) and np.all(np.abs(array) <= 2**53)
        )
    if dtype is np.bool_:
        return array.dtype.kind == "b"
    return False


def check_shape(name: str, array: np.ndarray, expected: list[int]) -> None:
    """Rank and every static dim must match; -1 accepts any size."""
    got = list(array.shape)
    ok = len(got) == len(expected) and all(e < 0 or e == g for e, g in zip(expected, got, strict=True))
    if not ok:
        raise UnprocessableInput(
            f"Input '{name}' expects shape {expected} (-1: any), got {got}.",
            code="invalid_tensor",
            details={"input": name, "expected_shape": expected, "got_shape": got},
        )


def check_finite(name: str, array: np.ndarray, policy: str) -> None:
    """The version's policy for NaN and ±Inf: 'reject' (default) or 'allow'."""
    if policy == "allow" or not np.issubdtype(array.dtype, np.floating):
        return
    if not np.all(np.isfinite(array)):
        raise UnprocessableInput(
            f"Input '{name}' contains NaN or Inf, which this model version does not accept.",
            code="non_finite_input",
            details={"input": name},
        )


def parse_tensor_inputs(
    inputs: Any, signature_inputs: list[dict[str, Any]], *, non_finite: str = "reject"
) -> dict[str, np.ndarray]:
    if not isinstance(inputs, dict) or not inputs:
        raise UnprocessableInput("'inputs' must be an object of named tensors.", code="invalid_tensor")
    expected = {spec["name"]: spec for spec in signature_inputs}
    # The client's names, echoed back: made safe to store and to encode, and at most 20.
    unknown = [client_text(name, 200) for name in sorted(set(inputs) - set(expected))[:20]]
    missing = sorted(set(expected) - set(inputs))
    if unknown or missing:
        raise UnprocessableInput(
            f"Expected inputs {sorted(expected)}; unknown: {unknown}, missing: {missing}.",
            code="invalid_tensor",
            details={"expected": sorted(expected), "unknown": unknown, "missing": missing},
        )
    feeds = {}
    for name, spec in expected.items():
        array = parse_tensor(name, inputs[name], spec["dtype"])
        check_shape(name, array, spec["shape"])
        check_finite(name, array, non_finite)
        feeds[name] = array
    return feeds
