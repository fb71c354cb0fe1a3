"""fast_decode: a large JPEG decoded at reduced scale (Image.draft), never below twice the
resize target; other formats box-reduced before the resize. Odd inputs (tests/images.py)
come out the same way up, in the same mode, with the same errors, with it on and off."""

import io
import json

import numpy as np
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from PIL import Image

from apps.core.exceptions import ApplicationError, PayloadTooLarge
from apps.inference import preprocessing
from apps.inference.preprocessing import decode_image, image_to_array
from apps.inference.runtime import RuntimeConfig, load_model
from apps.registry.models import ModelVersion
from apps.registry.preprocessing import parse_preprocessing
from tests import images
from tests.conftest import onnx_upload
from tests.factories import MLModelFactory, ModelVersionFactory
from tests.inference.conftest import DEMO, encode

MAX_PIXELS = 40_000_000  # the platform's default MAX_IMAGE_PIXELS
DEMO_CONFIG = json.loads((DEMO / "preprocessing.json").read_text())  # resize 256, crop 224
FULL = {**DEMO_CONFIG, "fast_decode": False}
FAST = {**DEMO_CONFIG, "fast_decode": True}


def preprocess(data: bytes, config: dict) -> tuple[preprocessing.DecodedImage, np.ndarray]:
    decoded = decode_image(data, max_pixels=MAX_PIXELS, preprocessing=config)
    return decoded, image_to_array(decoded.image, config, max_pixels=MAX_PIXELS)


def outcome(data: bytes, config: dict) -> tuple[str, int]:
    """The error code and HTTP status that decoding and preprocessing `data` ends with."""
    with pytest.raises(ApplicationError) as caught:
        preprocess(data, config)
    return caught.value.code, caught.value.status_code


# --- The odd inputs, with fast_decode on and off -------------------------------------------------

DECODABLE = [
    "baseline_12mp",
    "progressive_12mp",
    "greyscale_12mp",
    "cmyk_jpeg",
    "exif_rotated_12mp",
    "mpo_12mp",
]


@pytest.mark.parametrize("name", DECODABLE)
def test_a_large_jpeg_comes_out_the_same_with_the_fast_decode(name):
    data = images.ODD_IMAGES[name]()
    full, full_array = preprocess(data, FULL)
    fast, fast_array = preprocess(data, FAST)
    assert fast.image.mode == full.image.mode  # CMYK, L and RGB kept as they were
    assert (fast.format, fast.width, fast.height) == (full.format, full.width, full.height)
    # Drafted: smaller, but the same way up and never below twice the resize target.
    assert fast.image.width < full.image.width and fast.image.height < full.image.height
    assert (fast.image.width > fast.image.height) == (full.image.width > full.image.height)
    assert min(fast.image.size) >= 2 * FAST["resize"]
    assert fast_array.shape == full_array.shape
    # Normalised by 128: a mean difference of 0.02 is under 3 grey levels.
    assert np.abs(fast_array - full_array).mean() < 0.02


def test_without_preprocessing_the_decode_is_as_before():
    decoded = decode_image(images.baseline_12mp(), max_pixels=MAX_PIXELS)
    assert decoded.image.size == images.SIZE_12MP
    assert decoded.describe() == {"format": "JPEG", "width": 4032, "height": 3024}


@pytest.mark.parametrize(
    "config",
    [
        {k: v for k, v in DEMO_CONFIG.items() if k != "fast_decode"},  # stored before the option
        FULL,
        {**FAST, "resize": None},  # nothing to resize to: nothing to draft to
        {},
    ],
    ids=["key-absent", "off", "no-resize", "empty"],
)
def test_the_full_decode_unless_fast_decode_is_on_with_a_resize(config):
    decoded = decode_image(images.baseline_12mp(), max_pixels=MAX_PIXELS, preprocessing=config)
    assert decoded.image.size == images.SIZE_12MP
    assert "decoded_width" not in decoded.describe()


def test_describe_gives_the_size_sent_and_the_size_decoded_after_orientation():
    decoded = decode_image(images.exif_rotated_12mp(), max_pixels=MAX_PIXELS, preprocessing=FAST)
    assert decoded.describe() == {
        "format": "JPEG",
        "width": 4032,  # as sent: the header's size, before orientation, as today
        "height": 3024,
        "decoded_width": 756,  # a quarter of each side, then turned upright
        "decoded_height": 1008,
    }


@pytest.mark.parametrize("mode", ["shorter_side", "exact"])
@pytest.mark.parametrize("resize", [32, 100, 224, 256, 320, 500, 756])
def test_the_draft_stays_at_or_above_twice_the_target(resize, mode):
    config = {**FAST, "resize": resize, "resize_mode": mode, "crop": None}
    decoded, array = preprocess(images.baseline_12mp(), config)
    width, height = decoded.image.size
    assert min(width, height) >= 2 * resize  # both sides, which "exact" needs as well
    if min(4032 // (2 * resize), 3024 // (2 * resize)) >= 2:  # libjpeg could at least halve it
        assert decoded.describe()["decoded_width"] == width < 4032
        # The largest scale that stays above twice the target: half of it would not.
        assert min(width, height) <= 4 * resize or width == 4032 // 8
    _, full_array = preprocess(images.baseline_12mp(), {**config, "fast_decode": False})
    assert array.shape == full_array.shape


def test_a_12mp_jpeg_resized_to_256_is_decoded_at_a_quarter():
    decoded = decode_image(images.baseline_12mp(), max_pixels=MAX_PIXELS, preprocessing=FAST)
    assert decoded.image.size == (1008, 756)  # 1/4: 1/8 (504x378) would be under 512


def test_the_exif_rotated_jpeg_is_upright_either_way():
    upright = image_to_array(images.upright_12mp(), FULL)
    for config in (FULL, FAST):
        decoded, array = preprocess(images.exif_rotated_12mp(), config)
        assert decoded.image.width < decoded.image.height  # portrait, as shown
        assert np.abs(array - upright).mean() < 0.02
        # Turned the wrong way it would be another picture altogether.
        assert np.abs(array - np.rot90(upright, axes=(1, 2))).mean() > 0.1


def test_the_mpo_first_frame_is_decoded():
    _, array = preprocess(images.mpo_12mp(), FAST)
    _, first = preprocess(images.baseline_12mp(), FAST)  # the same picture as the first frame
    assert np.abs(array - first).mean() < 0.01


@pytest.mark.parametrize(
    ("name", "expected"),
    [("truncated_12mp", ("invalid_image", 422)), ("strip_png", ("image_too_large", 413))],
)
def test_a_broken_or_odd_input_fails_the_same_way(name, expected):
    data = images.ODD_IMAGES[name]()
    assert outcome(data, FULL) == outcome(data, FAST) == expected


def test_a_16_bit_png_keeps_its_range_and_matches():
    full, full_array = preprocess(images.png_16bit(), FULL)
    fast, fast_array = preprocess(images.png_16bit(), FAST)
    assert full.image.mode == fast.image.mode == "I;16"
    assert "decoded_width" not in fast.describe()  # PNG: decoded whole, reduced before the resize
    assert np.abs(fast_array - full_array).max() < 0.05


def test_the_pixel_limit_uses_the_size_sent_not_the_drafted_size():
    """A drafted 12 MP JPEG holds 0.76 MP, but the limit applies to the header's 12.2 MP,
    before any pixel is read (a truncated file would otherwise be invalid_image)."""
    limit = 4032 * 3024 - 1
    for data in (images.baseline_12mp(), images.truncated_12mp()):
        with pytest.raises(PayloadTooLarge) as caught:
            decode_image(data, max_pixels=limit, preprocessing=FAST)
        assert caught.value.code == "image_too_large"
        assert caught.value.details == {"width": 4032, "height": 3024, "max_pixels": limit}


def test_a_jpeg_too_thin_to_draft_is_refused_as_before():
    strip = encode(Image.new("RGB", (1, 20_000), "grey"), "JPEG")
    config = {**FAST, "crop": None}
    for fast in (False, True):
        with pytest.raises(PayloadTooLarge) as caught:
            preprocess(strip, {**config, "fast_decode": fast})
        assert caught.value.details["resized_height"] == 256 * 20_000


@pytest.mark.parametrize(("orientation", "shape"), [(1, (3, 100, 110)), (6, (3, 110, 100))])
def test_an_odd_sized_jpeg_comes_out_the_size_the_full_decode_gives(orientation, shape):
    """443x400 drafts to 222x200 (libjpeg rounds up): sized from its own aspect ratio it
    would come out 111x100, not 110x100 as the full decode's 443x400 gives."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.new("RGB", (443, 400), "teal"), "JPEG", exif=exif.tobytes())
    config = {**FAST, "resize": 100, "crop": None}
    decoded, fast = preprocess(data, config)
    assert sorted(decoded.image.size) == [200, 222]
    _, full = preprocess(data, {**config, "fast_decode": False})
    assert fast.shape == full.shape == shape


@pytest.mark.parametrize("orientation", range(1, 9))
def test_an_odd_sized_jpeg_in_any_orientation_is_resampled_where_the_full_decode_is(orientation):
    """521x513 at 1/8 decodes to 66x65, of which 65.125x64.125 is picture: the resize reads
    that box, at whichever corner the EXIF orientation turned it to. Read from the wrong
    corner, the picture is shifted by most of a drafted pixel: 10-15 grey levels off on
    average, against 1.5 here."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    picture = images.photo("astronaut").resize((521, 513), Image.Resampling.BICUBIC)
    data = encode(picture, "JPEG", quality=95, exif=exif.tobytes())
    config = {"resize": 32, "fast_decode": True, "layout": "NHWC"}  # the pixels as they are
    decoded, fast = preprocess(data, config)
    assert sorted(decoded.image.size) == [65, 66]
    _, full = preprocess(data, {**config, "fast_decode": False})
    assert fast.shape == full.shape == (32, 32, 3)
    assert np.abs(fast - full).mean() < 4


def test_other_formats_are_reduced_before_the_resize_and_stay_close():
    source = Image.open(io.BytesIO(images.enlarged_photo("coffee", 2_000_000)))
    for fmt in ("PNG", "WEBP", "BMP", "GIF"):
        data = encode(source, fmt)
        _, full = preprocess(data, FULL)
        _, fast = preprocess(data, FAST)
        assert np.abs(fast - full).mean() < 0.02, fmt


# --- The demo model's answers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_model():
    return load_model((0, ""), DEMO / "model.onnx", RuntimeConfig())


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def probabilities(model, data: bytes, config: dict) -> np.ndarray:
    _, array = preprocess(data, config)
    return softmax(next(iter(model.run({model.input_names[0]: array[None]}).values()))[0])


@pytest.mark.parametrize("pixels", [2_000_000, 12_000_000])
@pytest.mark.parametrize("name", ["coffee", "chelsea", "rocket"])
def test_the_demo_model_answers_the_same_on_enlarged_photos(demo_model, name, pixels):
    data = images.enlarged_photo(name, pixels)
    full, fast = probabilities(demo_model, data, FULL), probabilities(demo_model, data, FAST)
    assert fast.argmax() == full.argmax()
    assert np.abs(fast - full).max() <= 0.05  # measured: 0.016 at most on the five demo photos


# --- The option in the registry ------------------------------------------------------------------


def test_a_new_config_gets_fast_decode_on_and_an_empty_one_stays_empty():
    assert parse_preprocessing({"resize": 8})["fast_decode"] is True
    assert parse_preprocessing({"resize": 8, "fast_decode": False})["fast_decode"] is False
    assert parse_preprocessing(None) == {}  # no preprocessing: nothing to resize, nothing to draft


@pytest.mark.django_db
def test_a_new_upload_gets_fast_decode_on(api, user, django_capture_on_commit_callbacks):
    MLModelFactory(name="m", owner=user)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/models/m/versions/",
            {"file": onnx_upload(), "preprocessing": json.dumps({"resize": 8, "crop": 8})},
            format="multipart",
        )
    assert response.status_code == 201, response.content
    assert response.json()["preprocessing"]["fast_decode"] is True
    assert ModelVersion.objects.get(model__name="m").preprocessing["fast_decode"] is True


@pytest.mark.django_db
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite's schema editor cannot run inside the test's transaction; CI runs PostgreSQL",
)
def test_the_migration_turns_fast_decode_off_on_existing_versions():
    """Versions as they were stored before the option, migrated back to 0002 and forward
    again: each has fast_decode false, and one that already says true keeps it. (The rows are
    made first, with today's model, whose later columns do not exist at 0002; 0003's
    reverse changes nothing.)"""
    model = MLModelFactory(name="m")
    old = ModelVersionFactory(model=model, number=1, preprocessing=dict(DEMO_CONFIG))
    empty = ModelVersionFactory(model=model, number=2, preprocessing={})
    explicit = ModelVersionFactory(model=model, number=3, preprocessing={**DEMO_CONFIG, "fast_decode": True})
    with connection.cursor() as cursor:  # the rows' deferred key checks, before ALTER TABLE
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    executor = MigrationExecutor(connection)
    executor.migrate([("registry", "0002_modelversion_optimization")])
    executor = MigrationExecutor(connection)  # a fresh graph: the one above is migrated back
    executor.migrate(executor.loader.graph.leaf_nodes())
    for version in (old, empty, explicit):
        version.refresh_from_db()
    assert old.preprocessing == {**DEMO_CONFIG, "fast_decode": False}
    assert empty.preprocessing == {"fast_decode": False}
    assert explicit.preprocessing["fast_decode"] is True
    # What the decoder makes of them: the full decode, as before the option.
    for config in (old.preprocessing, empty.preprocessing):
        decoded = decode_image(images.baseline_12mp(), max_pixels=MAX_PIXELS, preprocessing=config)
        assert decoded.image.size == images.SIZE_12MP
