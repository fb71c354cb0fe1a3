"""Turning request inputs into model tensors. No ORM imports.

Images: decoded with Pillow (JPEG, PNG, WebP, BMP, GIF first frame), EXIF
orientation applied, then the version's preprocessing config (see
apps/registry/preprocessing.py): colour mode, resize, crop, (x * scale - mean) / std,
channel order, layout and dtype. Named tensor inputs: apps/inference/tensors.py.

fast_decode (docs/decisions/0013-fast-jpeg-decode.md): a JPEG is decoded in the DCT
domain at 1/2, 1/4 or 1/8 scale (Image.draft), never below twice the resize target, then
resized as usual; other formats are decoded whole and box-reduced to no less than twice
the target before the resize (reducing_gap). A config without the key keeps the full
decode; new versions get it on from the serializer's default.
"""

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from apps.core.exceptions import PayloadTooLarge, UnprocessableInput
from apps.inference.tensors import DTYPES

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "GIF", "MPO"}  # MPO: multi-picture JPEG from phones
_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


# A config without "fast_decode" (every version stored before the option existed) decodes
# in full, as it always has; the serializer gives new versions True. See ADR 0013.
FAST_DECODE_DEFAULT = False
# Drafting and reducing stop at this multiple of the resize target: the last resize then
# still averages at least 2x2 source pixels per output pixel, so the answer stays close to
# the full decode's; drafting to 1x the target is faster but strays further (the demo
# model's numbers: docs/performance.md, "The photo-size ladder").
FAST_DECODE_MARGIN = 2
_DRAFTABLE = {"JPEG", "MPO"}  # libjpeg scales in the DCT domain; MPO frames are JPEGs
# A drafted image's info: the size the full decode would have (after EXIF orientation) and
# where the picture lies in what was decoded. libjpeg rounds a scaled side up (4001 px at
# 1/4: 1001, of which 1000.25 is picture), so the resize reads that box, not the whole
# image: same output size and sampling grid as from the full decode.
_SOURCE = "mlplatform.source"
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}  # as ImageOps.exif_transpose turns them


@dataclass
class DecodedImage:
    image: Image.Image
    format: str
    width: int  # as sent: from the header, before EXIF orientation
    height: int
    # The size actually decoded (after EXIF orientation) when the decode was reduced.
    decoded_size: tuple[int, int] | None = None

    def describe(self) -> dict[str, Any]:
        """The image's metadata for its audit row."""
        meta: dict[str, Any] = {"format": self.format, "width": self.width, "height": self.height}
        if self.decoded_size is not None:
            meta["decoded_width"], meta["decoded_height"] = self.decoded_size
        return meta


def fast_decode_enabled(preprocessing: dict[str, Any] | None) -> bool:
    return bool(preprocessing and preprocessing.get("fast_decode", FAST_DECODE_DEFAULT))


def draft_request(preprocessing: dict[str, Any] | None) -> tuple[int, int] | None:
    """The size to ask Image.draft for: both sides at least twice the resize target.

    For "exact" that is the rule itself; for "shorter_side" it is the same thing, since the
    longer side is at least the shorter. No resize configured: no draft."""
    if not fast_decode_enabled(preprocessing):
        return None
    resize = preprocessing.get("resize") if preprocessing else None
    if not resize:
        return None
    side = FAST_DECODE_MARGIN * int(resize)
    return side, side


def decode_image(
    data: bytes, *, max_pixels: int, preprocessing: dict[str, Any] | None = None
) -> DecodedImage:
    """Decode image bytes, refusing pixel bombs from the header, before any pixel is decoded.

    With a preprocessing config whose fast_decode is on, a large JPEG is decoded at a
    reduced scale (see the module's docstring); preprocessing=None decodes in full."""
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
    if width * height > max_pixels:  # the header's size, whatever is decoded below
        raise PayloadTooLarge(
            f"The image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}.",
            code="image_too_large",
            details={"width": width, "height": height, "max_pixels": max_pixels},
        )
    request = draft_request(preprocessing) if fmt in _DRAFTABLE else None
    box, orientation = None, 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.seek(0)  # GIF and other animations: the first frame
            # Only when libjpeg can scale by 2 or more: Pillow would otherwise still set up
            # a scale-1 "draft", and the decode would be described as reduced.
            if request and min(width // request[0], height // request[1]) >= 2:
                drafted = image.draft(image.mode, request)  # keeps CMYK, L, RGB
                if drafted is not None:
                    box = drafted[1]  # (0, 0, width / scale, height / scale)
                    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # no copy of every image without EXIF
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(str(exc), code="image_too_large") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or corrupt data
        raise UnprocessableInput(f"The image is corrupt or truncated: {exc}", code="invalid_image") from exc
    decoded_size = None
    if box is not None:
        decoded_size = image.size
        turned = orientation in (5, 6, 7, 8)  # a quarter turn: the sides swap
        source = (height, width) if turned else (width, height)
        image.info[_SOURCE] = (source, _oriented_box(image.size, (box[2], box[3]), orientation))
    return DecodedImage(image=image, format=fmt or "", width=width, height=height, decoded_size=decoded_size)


def _oriented_box(
    size: tuple[int, int], picture: tuple[float, float], orientation: int
) -> tuple[float, float, float, float]:
    """Where a picture of `picture` size, decoded at the top left of an image now `size`
    (already turned upright), lies after the EXIF orientation's transpose."""
    method = _ORIENTATION_TRANSPOSE.get(orientation)
    if orientation in (5, 6, 7, 8):  # a quarter turn: the sides swap
        picture = (picture[1], picture[0])
    # The corner the top-left one moved to, found by turning a 2x2 marker the same way.
    marker = Image.new("L", (2, 2))
    marker.putpixel((0, 0), 1)
    if method is not None:
        marker = marker.transpose(method)
    right, bottom = next((x, y) for x in (0, 1) for y in (0, 1) if marker.getpixel((x, y)))
    left = size[0] - picture[0] if right else 0.0
    top = size[1] - picture[1] if bottom else 0.0
    return (left, top, left + picture[0], top + picture[1])


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
        # A drafted image is sized from the image as sent, so it comes out the same size.
        (width, height), box = image.info.get(_SOURCE, (image.size, None))
        if config.get("resize_mode", "shorter_side") == "exact":
            size = (resize, resize)
        elif width <= height:  # the shorter side becomes `resize` (rounding as torchvision)
            size = (resize, int(resize * height / width))
        else:
            size = (int(resize * width / height), resize)
        if size != image.size:
            _check_resized(size, max_pixels)
            # fast_decode: box-reduce what was decoded whole (PNG, WebP, ...) to no less than
            # twice the target first; a drafted JPEG is already within that, so nothing more.
            gap = FAST_DECODE_MARGIN if fast_decode_enabled(config) else None
            image = image.resize(size, resample, box=box, reducing_gap=gap)
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
    dtype = DTYPES[config.get("dtype", "float32")]
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
