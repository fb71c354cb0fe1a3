"""Build the demo model's small labelled evaluation set from real photos that ship in packages.

    .venv/bin/python scripts/build_demo_eval_set.py [--sheet /tmp/sheet.png]

No ImageNet validation images are available offline, so the set is made from the five
scikit-image photos in demo/images/ and scikit-learn's two sample images (china.jpg,
flower.jpg; `sklearn.datasets.load_sample_images`), each as is, mirrored, centre-cropped
and corner-cropped. Each variant is labelled with the fp32 model's top-1 class; the
labels were then checked by eye on the contact sheet (--sheet), and variants whose label
is not a fair description of the picture are listed in REJECTED and left out. So the fp32
model scores 100 % top-1 on this set by construction: what the set measures is how far an
optimised model strays from it (its top-1 agreement), on real photos.

Writes demo/efficientnet_lite0/eval-set.zip (one folder per label) and eval-set.md.
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

# Variants whose fp32 label does not describe the picture (checked by eye on the sheet).
# No ImageNet class fits an astronaut portrait (fp32: "bobsled", "barbell") or a deep-sky
# field ("nematode", "flatworm"); a few crops show too little of their subject.
REJECTED: set[str] = {
    *(f"astronaut-{v}" for v in ("full", "mirror", "centre", "top-left", "centre-mirror")),
    *(
        f"hubble_deep_field-{v}"
        for v in ("full", "mirror", "centre", "top-left", "bottom-right", "centre-mirror")
    ),
    "rocket-mirror",  # "drilling platform"
    "rocket-bottom-right",  # "drilling platform"
    "coffee-bottom-right",  # "chocolate sauce"
    "flower-mirror",  # "hen-of-the-woods"
    "flower-top-left",  # "anemone fish"
    "flower-bottom-right",  # "ear"
}


def sources() -> dict[str, Image.Image]:
    images = {p.stem: Image.open(p).convert("RGB") for p in sorted((ROOT / "demo" / "images").glob("*.jpg"))}
    from sklearn.datasets import load_sample_images

    samples = load_sample_images()
    for name, array in zip(samples.filenames, samples.images, strict=True):
        images[Path(name).stem] = Image.fromarray(array)
    return images


def variants(image: Image.Image) -> dict[str, Image.Image]:
    w, h = image.size
    side = min(w, h)
    crop = int(side * 0.7)
    corner = int(side * 0.6)
    found = {
        "full": image,
        "mirror": ImageOps.mirror(image),
        "centre": image.crop(((w - crop) // 2, (h - crop) // 2, (w + crop) // 2, (h + crop) // 2)),
        "top-left": image.crop((0, 0, corner, corner)),
        "bottom-right": image.crop((w - corner, h - corner, w, h)),
    }
    found["centre-mirror"] = ImageOps.mirror(found["centre"])
    return found


def jpeg(image: Image.Image) -> bytes:
    image = image.copy()
    image.thumbnail((320, 320))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sheet", type=Path, help="also write a contact sheet (PNG) for checking labels by eye"
    )
    args = parser.parse_args()
    from apps.inference.postprocessing import top_k
    from apps.inference.preprocessing import decode_image, image_to_array
    from apps.inference.runtime import RuntimeConfig, load_model

    model = load_model((0, ""), DEMO / "model.onnx", RuntimeConfig())
    labels = (DEMO / "labels.txt").read_text().splitlines()
    config = json.loads((DEMO / "preprocessing.json").read_text())
    rows = []
    for source, image in sources().items():
        for variant, picture in variants(image).items():
            data = jpeg(picture)
            array = image_to_array(decode_image(data, max_pixels=10**8).image, config)[None]
            best = top_k(
                model.run({model.input_names[0]: array})[model.output_names[0]], labels, 1, apply_softmax=True
            )
            rows.append((f"{source}-{variant}", best[0][0]["label"], best[0][0]["score"], data))
    kept = [row for row in rows if row[0] not in REJECTED]
    with zipfile.ZipFile(DEMO / "eval-set.zip", "w", zipfile.ZIP_STORED) as archive:
        for name, label, _, data in kept:
            archive.writestr(f"{label}/{name}.jpg", data)
    lines = [
        "# The demo model's evaluation set",
        "",
        "Made by `scripts/build_demo_eval_set.py` (read its docstring): real photos from scikit-image",
        "and scikit-learn, with mirrors and crops, labelled by the fp32 model and checked by eye.",
        "The fp32 model scores 100 % top-1 here by construction; the set measures how far an",
        "optimised model strays from it.",
        "",
        "| image | label (fp32 top-1) | fp32 score |",
        "|---|---|---|",
        *[f"| {name} | {label} | {score:.2f} |" for name, label, score, _ in kept],
        "",
        f"Left out after checking by eye: {', '.join(sorted(REJECTED)) or 'none'}.",
    ]
    (DEMO / "eval-set.md").write_text("\n".join(lines) + "\n")
    print(f"{len(kept)} images, {len({row[1] for row in kept})} labels -> {DEMO / 'eval-set.zip'}")
    if args.sheet:
        sheet = Image.new("RGB", (6 * 200, ((len(rows) + 5) // 6) * 220), "white")
        draw = ImageDraw.Draw(sheet)
        for index, (name, label, score, data) in enumerate(rows):
            thumb = Image.open(io.BytesIO(data))
            thumb.thumbnail((190, 190))
            x, y = (index % 6) * 200, (index // 6) * 220
            sheet.paste(thumb, (x + 5, y + 5))
            draw.text((x + 5, y + 198), f"{name[:18]}: {label[:14]} {score:.2f}", fill="black")
        sheet.save(args.sheet)


if __name__ == "__main__":
    main()
