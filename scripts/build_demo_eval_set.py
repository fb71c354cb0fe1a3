"""Build the demo model's labelled evaluation set from the real photos that installed packages ship.

    .venv/bin/python scripts/build_demo_eval_set.py [--sheet /tmp/sheet] [--all]

No ImageNet validation images are available offline. Every real photograph found in the
environment's packages is used (searched for: scikit-image's `skimage.data`, scikit-learn's
sample images, matplotlib's sample data, Pillow's and TensorFlow/Keras's packaged images,
`scipy.datasets`): the five scikit-image photos kept in demo/images/ (scikit-image is not
installed any more; they were saved from 0.26.0, CC0 / public domain) and scikit-learn's
china.jpg and flower.jpg (CC BY 2.0, attribution in the manifest). matplotlib is not
installed, Pillow's wheel ships no test images, TensorFlow/Keras ship no photos, and
`scipy.datasets` downloads at run time (not allowed here). So the set holds **7 distinct
photos**; its items are views of them and are not independent.

Each photo gives a grid of views: the whole picture, square crops at four scales (0.85,
0.7, 0.55, 0.45 of the shorter side) at nine positions, each also mirrored, and every
view saved at one of two resolutions (224 or 160 px on the shorter side, so the pipeline's
resize sees a different scale). Each view is labelled with the fp32 model's top-1 class.

Review: the labels were checked by eye on contact sheets (--sheet) and, per photo, the
classes that fairly describe what it shows were written into ACCEPTED. A view whose fp32
label is not among its photo's accepted classes (a crop showing too little of the subject,
or a class that does not describe the picture) is left out and listed in the manifest
with its label. The fp32 model scores 100 % top-1 on the set by construction: the set
measures how far an optimised model strays from fp32 on real photos (top-1 agreement).

Writes demo/efficientnet_lite0/eval-set.zip (one folder per label, JPEG quality 85) and
eval-set.md (the manifest).
"""

import argparse
import io
import json
import sys
import zipfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo" / "efficientnet_lite0"
sys.path.insert(0, str(ROOT))

SOURCES = {
    "astronaut": "scikit-image `astronaut`, NASA, public domain",
    "chelsea": "scikit-image `chelsea`, Stefan van der Walt, CC0",
    "coffee": "scikit-image `coffee`, Rachel Michetti, CC0",
    "hubble_deep_field": "scikit-image `hubble_deep_field`, NASA, public domain",
    "rocket": "scikit-image `rocket`, SpaceX, CC0 / public domain",
    "china": "scikit-learn `china.jpg`, danielbuechele (Flickr), CC BY 2.0",
    "flower": "scikit-learn `flower.jpg`, vultilion (Flickr), CC BY 2.0",
}

# Per photo, the fp32 classes that describe what it shows (decided by eye on the contact
# sheets). The astronaut portrait and the deep-sky field have no fitting ImageNet class
# for most views; their views survive only where a fitting object fills the crop.
ACCEPTED: dict[str, set[str]] = {
    "astronaut": {
        "football helmet",
        "crash helmet",
        "projectile, missile",
        "space shuttle",
    },  # helmet, model shuttle
    "chelsea": {"Egyptian cat", "tabby, tabby cat", "tiger cat"},
    "coffee": {"espresso", "cup", "coffee mug"},
    "hubble_deep_field": set(),  # "nematode", "flatworm": no class fits a deep-sky field
    "rocket": {"missile", "projectile, missile", "space shuttle"},  # not "drilling platform", "crane"
    "china": {"palace", "bell cote, bell cot", "lakeside, lakeshore", "monastery"},  # not "boathouse"
    "flower": {"daisy"},  # a dahlia: ImageNet's nearest class; not "hen-of-the-woods"
}

SCALES = (0.85, 0.7, 0.55, 0.45)
POSITIONS = (
    (0.0, 0.0),
    (0.5, 0.0),
    (1.0, 0.0),
    (0.0, 0.5),
    (0.5, 0.5),
    (1.0, 0.5),
    (0.0, 1.0),
    (0.5, 1.0),
    (1.0, 1.0),
)
SIDES = (224, 160)


def sources() -> dict[str, Image.Image]:
    images = {p.stem: Image.open(p).convert("RGB") for p in sorted((ROOT / "demo" / "images").glob("*.jpg"))}
    from sklearn.datasets import load_sample_images

    samples = load_sample_images()
    for name, array in zip(samples.filenames, samples.images, strict=True):
        images[Path(name).stem] = Image.fromarray(array)
    return images


def views(image: Image.Image) -> dict[str, Image.Image]:
    """The whole picture and square crops at each scale and position, each also mirrored."""
    w, h = image.size
    found = {"full": image}
    for scale in SCALES:
        side = int(min(w, h) * scale)
        for px, py in POSITIONS:
            x, y = int((w - side) * px), int((h - side) * py)
            found[f"s{int(scale * 100)}-x{int(px * 2)}y{int(py * 2)}"] = image.crop(
                (x, y, x + side, y + side)
            )
    found.update({f"{name}-m": ImageOps.mirror(view) for name, view in list(found.items())})
    return found


def jpeg(image: Image.Image, side: int) -> bytes:
    """Downscaled so the shorter side is `side` px (the repository stays small)."""
    w, h = image.size
    ratio = side / min(w, h)
    image = image.resize((max(1, round(w * ratio)), max(1, round(h * ratio))), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def labelled(model, labels: list[str], config: dict, data: bytes) -> tuple[str, float, float]:
    """The fp32 top-1 label, its probability and the margin over the second class."""
    from apps.inference.postprocessing import softmax
    from apps.inference.preprocessing import decode_image, image_to_array

    array = image_to_array(decode_image(data, max_pixels=10**8).image, config)[None]
    probs = softmax(model.run({model.input_names[0]: array})[model.output_names[0]])[0]
    first, second = probs.argsort()[::-1][:2]
    return labels[first], float(probs[first]), float(probs[first] - probs[second])


def build() -> list[dict]:
    from apps.inference.runtime import RuntimeConfig, load_model

    model = load_model((0, ""), DEMO / "model.onnx", RuntimeConfig())
    labels = (DEMO / "labels.txt").read_text().splitlines()
    config = json.loads((DEMO / "preprocessing.json").read_text())
    rows = []
    for photo, image in sources().items():
        for index, (view, picture) in enumerate(views(image).items()):
            side = SIDES[index % len(SIDES)]  # alternate resolutions across the grid
            data = jpeg(picture, side)
            label, score, margin = labelled(model, labels, config, data)
            rows.append(
                {
                    "name": f"{photo}-{view}-{side}",
                    "photo": photo,
                    "label": label,
                    "score": score,
                    "margin": margin,
                    "kept": label in ACCEPTED[photo],
                    "data": data,
                }
            )
    return rows


def write(rows: list[dict]) -> None:
    kept = [row for row in rows if row["kept"]]
    with zipfile.ZipFile(DEMO / "eval-set.zip", "w", zipfile.ZIP_STORED) as archive:
        for row in kept:
            # A fixed timestamp: the same photos give the same bytes, build after build.
            entry = zipfile.ZipInfo(f"{row['label']}/{row['name']}.jpg", date_time=(2026, 12, 1, 0, 0, 0))
            archive.writestr(entry, row["data"])
    (DEMO / "eval-set.md").write_text(manifest(rows, kept))
    size = (DEMO / "eval-set.zip").stat().st_size
    print(f"{len(kept)} of {len(rows)} views kept, {len({r['photo'] for r in kept})} photos, {size} bytes")


def manifest(rows: list[dict], kept: list[dict]) -> str:
    photos = sorted({row["photo"] for row in kept})
    per_photo = [f"| {p} | {SOURCES[p]} | {sum(r['photo'] == p for r in kept)} |" for p in SOURCES]
    near_ties = sum(row["margin"] < 0.05 for row in kept)
    lines = [
        "# The demo model's evaluation set",
        "",
        "Made by `scripts/build_demo_eval_set.py` (read its docstring for how the views are made",
        "and reviewed). Labels are the fp32 model's top-1 class, checked by eye; the fp32 model",
        "scores 100 % top-1 here by construction, so the set measures how far an optimised model",
        "strays from fp32 (top-1 agreement) on real photos.",
        "",
        f"- **Items: {len(kept)}** (views kept of {len(rows)} made).",
        f"- **Distinct photos: {len(photos)}** ({', '.join(photos)}). The items are crops, mirrors",
        "  and rescales of these few photos, so they are not independent samples: an agreement",
        "  interval computed as if they were is narrower than the truth.",
        f"- Near ties: {near_ties} items have fp32 top-1 less than 0.05 above the second class.",
        f"- Labels: {len({r['label'] for r in kept})}.",
        "",
        "| photo | source and licence | items |",
        "|---|---|---|",
        *per_photo,
        "",
        "scikit-learn's photos are CC BY 2.0: attribution as above (sklearn/datasets/images/README.txt).",
        "",
        "| item | label (fp32 top-1) | fp32 probability | margin over 2nd |",
        "|---|---|---|---|",
        *[f"| {r['name']} | {r['label']} | {r['score']:.2f} | {r['margin']:.3f} |" for r in kept],
        "",
        "Review: for each photo, the classes that describe it were chosen by eye from the",
        "labels its views got (counted per photo) and from contact sheets of the photos in",
        "doubt (astronaut, hubble_deep_field, rocket, china, flower); `ACCEPTED` in the script",
        "holds them. A view is kept when its fp32 label is one of its photo's classes.",
        "",
        "Left out on review (the label does not describe the picture):",
        "",
        *[f"- {r['name']}: {r['label']}" for r in rows if not r["kept"]],
    ]
    return "\n".join(lines) + "\n"


def sheet(rows: list[dict], prefix: Path) -> None:
    """Contact sheets of 48 views each, with their labels, for checking by eye."""
    for start in range(0, len(rows), 48):
        page = Image.new("RGB", (8 * 160, 6 * 180), "white")
        draw = ImageDraw.Draw(page)
        for index, row in enumerate(rows[start : start + 48]):
            thumb = Image.open(io.BytesIO(row["data"]))
            thumb.thumbnail((150, 150))
            x, y = (index % 8) * 160, (index // 8) * 180
            page.paste(thumb, (x + 5, y + 5))
            mark = "" if row["kept"] else "X "
            draw.text((x + 5, y + 158), f"{mark}{row['label'][:20]} {row['score']:.2f}", fill="black")
        page.save(f"{prefix}-{start // 48:02d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sheet", type=Path, help="also write contact sheets <SHEET>-NN.png for review by eye"
    )
    args = parser.parse_args()
    rows = build()
    write(rows)
    if args.sheet:
        sheet(rows, args.sheet)


if __name__ == "__main__":
    main()
