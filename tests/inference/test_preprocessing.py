"""image_to_array on its own: modes, transparency, padding, crop offsets and integer dtypes."""

import numpy as np
import pytest
from PIL import Image

from apps.inference.preprocessing import decode_image, image_to_array
from tests.inference.conftest import encode

RAW = {"layout": "NHWC", "dtype": "float32"}  # pixel values as they are, channels last


def test_a_16_bit_greyscale_png_keeps_its_range():
    """Pillow's convert() clips 16-bit values to 255; the range is scaled down instead."""
    gradient = np.linspace(0, 65535, 64 * 64).astype(np.uint16).reshape(64, 64)
    data = encode(Image.fromarray(gradient), "PNG")
    decoded = decode_image(data, max_pixels=10_000)
    assert decoded.image.mode.startswith("I")
    for mode in ("L", "RGB"):
        array = image_to_array(decoded.image, {**RAW, "color_mode": mode})
        assert array.min() == 0 and array.max() == 255
        assert (array == 255).mean() < 0.01  # not a white picture


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("source", ["RGBA", "LA"])
def test_transparent_pixels_are_white_in_every_colour_mode(mode, source):
    transparent = Image.new(source, (4, 4), (0, 0, 0, 0) if source == "RGBA" else (0, 0))
    assert (image_to_array(transparent, {**RAW, "color_mode": mode}) == 255).all()


def test_a_palette_gif_with_a_transparent_colour_is_white_in_greyscale():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0] * 256)
    data = encode(image, "GIF", transparency=0)
    decoded = decode_image(data, max_pixels=10_000)
    assert (image_to_array(decoded.image, {**RAW, "color_mode": "L"}) == 255).all()


def test_a_crop_larger_than_the_image_pads_it_at_its_own_size():
    """A 100x50 image with crop 224 and no resize: centred on black, not scaled up to fit."""
    array = image_to_array(Image.new("RGB", (100, 50), "white"), {**RAW, "crop": 224})
    assert array.shape == (224, 224, 3)
    white = np.argwhere(array[:, :, 0] == 255)
    assert white.min(axis=0).tolist() == [87, 62]
    assert white.max(axis=0).tolist() == [136, 161]  # 50 rows and 100 columns
    assert array.sum() == 255 * 100 * 50 * 3


def test_centre_crop_offsets_round_as_torchvision():
    """259 - 224 = 35: torchvision starts at round(17.5) = 18, not 35 // 2 = 17."""
    columns = np.tile(np.arange(259, dtype=np.uint8), (224, 1))
    array = image_to_array(Image.fromarray(columns, "L"), {**RAW, "color_mode": "L", "crop": 224})
    assert array[0, 0, 0] == 18


def test_int8_inputs_are_scaled_and_held_to_their_range_not_wrapped():
    image = Image.new("RGB", (2, 2), (200, 100, 0))
    plain = image_to_array(image, {"layout": "NHWC", "dtype": "int8"})
    assert plain.dtype == np.int8
    assert plain[0, 0].tolist() == [127, 100, 0]  # 200 does not fit an int8: held at 127
    centred = image_to_array(image, {"layout": "NHWC", "dtype": "int8", "mean": [128.0]})
    assert centred[0, 0].tolist() == [72, -28, -128]


def test_uint8_with_the_default_config_is_the_pixels_themselves():
    image = Image.new("RGB", (2, 2), (200, 100, 0))
    array = image_to_array(image, {"layout": "NCHW", "dtype": "uint8"})
    assert array.dtype == np.uint8
    assert array[:, 0, 0].tolist() == [200, 100, 0]
