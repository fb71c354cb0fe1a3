"""Test images made in memory: large, rotated, odd and broken inputs that every decoding
path (sync predictions, batch jobs, fast_decode on and off) must treat the same way.

Cheap to make and cached: the 12 MP pictures are a demo photo enlarged (smooth) plus a
tiled patch of Gaussian noise, encoded once per process (0.1-0.3 s each). Each
function returns the encoded bytes; `ODD_IMAGES` names them all for parametrised tests.
`detailed_12mp` is a camera-like 3 MB+ JPEG for bench/ladder.py.
"""

import functools
import io
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageChops

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "demo" / "images"
SIZE_12MP = (4032, 3024)  # a phone's 4:3 photo
SIZE_3MP = (2016, 1512)
NOISE_SIGMA = 4.0  # grey levels: some texture, so an enlarged photo is not perfectly smooth
PATCH = 509


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


@functools.cache
def noise(size: tuple[int, int], sigma: float, seed: int = 0) -> Image.Image:
    """Zero-mean Gaussian noise centred on 128 (L): a 509x509 patch of Pillow's noise tiled
    over `size` (one patch costs 10 ms, a fresh 12 MP field 0.6 s). 509 is prime, so the
    pattern never lines up with JPEG's 8x8 blocks; `seed` shifts it."""
    patch = Image.effect_noise((PATCH, PATCH), sigma)
    field = Image.new("L", size)
    for top in range(-seed % PATCH - PATCH, size[1], PATCH):
        for left in range(-(seed * 7) % PATCH - PATCH, size[0], PATCH):
            field.paste(patch, (left, top))
    return field


def add_noise(image: Image.Image, sigma: float = NOISE_SIGMA, seed: int = 0) -> Image.Image:
    """`image` (RGB) plus zero-mean Gaussian noise, the same on every channel (luma grain)."""
    grain = noise(image.size, sigma, seed)
    return ImageChops.add(image, Image.merge("RGB", [grain] * 3), scale=1.0, offset=-128)


def photo(name: str) -> Image.Image:
    """A demo photo (demo/images/<name>.jpg), decoded, RGB."""
    with Image.open(PHOTOS / f"{name}.jpg") as image:
        return image.convert("RGB")


def enlarged_size(size: tuple[int, int], pixels: int) -> tuple[int, int]:
    """`size` scaled to about `pixels` pixels, its aspect ratio kept."""
    factor = (pixels / (size[0] * size[1])) ** 0.5
    return round(size[0] * factor), round(size[1] * factor)


def enlarge(image: Image.Image, pixels: int, quality: int = 90) -> bytes:
    """`image` enlarged (bicubic, aspect ratio kept) to about `pixels` pixels, as a baseline
    JPEG. Smooth, so cheap to entropy-decode: see detailed_12mp for a camera-like one."""
    return encode(
        image.resize(enlarged_size(image.size, pixels), Image.Resampling.BICUBIC), "JPEG", quality=quality
    )


@functools.cache
def enlarged_photo(name: str, pixels: int = 12_000_000, quality: int = 90) -> bytes:
    """A demo photo enlarged to about `pixels` pixels (see enlarge)."""
    return enlarge(photo(name), pixels, quality)


@functools.cache
def _picture(size: tuple[int, int] = SIZE_12MP, name: str = "coffee") -> Image.Image:
    """An upright RGB picture: the demo photo stretched to `size`, plus noise."""
    image = photo(name).resize(size, Image.Resampling.BICUBIC)
    return add_noise(image)


def upright_12mp() -> Image.Image:
    """The picture exif_rotated_12mp() shows when turned the right way up (3024x4032)."""
    return _picture((SIZE_12MP[1], SIZE_12MP[0]), "chelsea")


@functools.cache
def baseline_12mp() -> bytes:
    """A plain 12 MP (4032x3024) baseline JPEG, quality 90 (about 1.5 MB)."""
    return encode(_picture(), "JPEG", quality=90)


@functools.cache
def progressive_12mp() -> bytes:
    """The same picture as a progressive JPEG."""
    return encode(_picture(), "JPEG", quality=90, progressive=True)


@functools.cache
def greyscale_12mp() -> bytes:
    """The same picture as a single-channel (L) JPEG."""
    return encode(_picture().convert("L"), "JPEG", quality=90)


@functools.cache
def cmyk_jpeg() -> bytes:
    """A 3 MP (2016x1512) CMYK JPEG (Adobe APP14, as Pillow and Photoshop write them):
    large enough for a resize-256 draft to halve it."""
    return encode(_picture(SIZE_3MP).convert("CMYK"), "JPEG", quality=90)


@functools.cache
def exif_rotated_12mp() -> bytes:
    """A 12 MP JPEG held sideways (4032x3024 pixels) with EXIF orientation 6: shown turned
    90 degrees clockwise, it is upright_12mp(), 3024x4032, as a phone held upright saves it."""
    stored = upright_12mp().transpose(Image.Transpose.ROTATE_90)  # a quarter turn anticlockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    return encode(stored, "JPEG", quality=90, exif=exif.tobytes())


@functools.cache
def mpo_12mp() -> bytes:
    """A phone's multi-picture JPEG (MPO): two 12 MP frames; the first is baseline_12mp()'s picture."""
    second = _picture(SIZE_12MP, "astronaut")
    return encode(_picture(), "MPO", quality=90, save_all=True, append_images=[second])


@functools.cache
def strip_png() -> bytes:
    """A 1x50000 PNG: few pixels, but resizing its short side up makes an enormous image."""
    column = Image.linear_gradient("L").resize((1, 50_000))
    return encode(column.convert("RGB"), "PNG")


@functools.cache
def truncated_12mp() -> bytes:
    """baseline_12mp() cut in half: the header reads, the pixels run out."""
    data = baseline_12mp()
    return data[: len(data) // 2]


@functools.cache
def png_16bit() -> bytes:
    """A 16-bit greyscale (I;16) PNG, 2016x1512, a gradient over the full 0..65535 range."""
    gradient = Image.linear_gradient("L").resize(SIZE_3MP, Image.Resampling.BILINEAR)
    wide = Image.eval(gradient, lambda v: v * 257).convert("I")  # 0..255 to 0..65535
    return encode(wide.convert("I;16"), "PNG")


@functools.cache
def _covering(name: str, size: tuple[int, int]) -> Image.Image:
    """A demo photo at its own resolution, enlarged only as far as it must be to cover `size`."""
    image = photo(name)
    factor = max(size[0] / image.width, size[1] / image.height)
    if factor > 1:
        cover = (max(size[0], round(image.width * factor)), max(size[1], round(image.height * factor)))
        image = image.resize(cover, Image.Resampling.BICUBIC)
    return image


@functools.cache
def detailed_12mp(seed: int = 0, quality: int = 90) -> bytes:
    """A camera-like 12 MP JPEG of 3 MB or more (5.2 MB at quality 90): the demo photos at
    their own resolution (only chelsea.jpg, 451x300, is enlarged, 1.44x, to cover a tile),
    tiled edge to edge in a 7x7 mosaic over 4032x3024 (their order and mirroring varied by
    `seed`), plus luma grain (sigma 10) and finer noise on each channel (sigma 4), so that
    entropy decoding has as much to do as with a real photo's sensor noise and detail."""
    names = sorted(p.stem for p in PHOTOS.glob("*.jpg"))
    tile = (SIZE_12MP[0] // 7 + 1, SIZE_12MP[1] // 7 + 1)  # 577x433: the photos barely scaled
    canvas = Image.new("RGB", SIZE_12MP)
    for index in range(49):
        name = names[(index * 3 + seed) % len(names)]
        image = _covering(name, tile)
        if (index + seed) % 2:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        left, top = (image.width - tile[0]) // 2, (image.height - tile[1]) // 2
        piece = image.crop((left, top, left + tile[0], top + tile[1]))
        canvas.paste(piece, ((index % 7) * (tile[0] - 1), (index // 7) * (tile[1] - 1)))
    grain = add_noise(canvas, 10.0, seed)
    channels = [
        ImageChops.add(c, noise(SIZE_12MP, 4.0, seed + 1 + i), offset=-128)
        for i, c in enumerate(grain.split())
    ]
    return encode(Image.merge("RGB", channels), "JPEG", quality=quality)


# Every odd input by name: what the sync path and a batch job must answer the same way.
ODD_IMAGES: dict[str, Callable[[], bytes]] = {
    "baseline_12mp": baseline_12mp,
    "progressive_12mp": progressive_12mp,
    "greyscale_12mp": greyscale_12mp,
    "cmyk_jpeg": cmyk_jpeg,
    "exif_rotated_12mp": exif_rotated_12mp,
    "mpo_12mp": mpo_12mp,
    "strip_png": strip_png,
    "truncated_12mp": truncated_12mp,
    "png_16bit": png_16bit,
}
