"""Train the digits demo classifier and convert it to ONNX with apps.registry.conversion.

Data: scikit-learn's bundled digits (1,797 8x8 grey images of handwritten digits, pixel
values 0..16, 64 features), read from the package: no download. Split 75/25, stratified,
fixed seed. Model: StandardScaler then a one-hidden-layer MLPClassifier (matrix
multiplications, so ONNX Runtime's int8 quantization has weights to work on).

Writes into demo/digits/ (relative to the repository root):

* model.onnx: input `input` float32 [batch, 64]; outputs `label` int64 [batch] and
  `probabilities` float32 [batch, 10];
* labels.txt: "0".."9", one per line (index i of `probabilities` is digit i);
* test.jsonl: the held-out test split, one `{"inputs": {"input": [[64 floats]]}, "label": "7"}`
  per line: a prediction request body plus the expected label;
* README.md: how it was made, with the test accuracy of scikit-learn and of ONNX Runtime.

Needs the optional converters: pip install -r requirements-extras.txt, then
    .venv/bin/python scripts/train_digits.py
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import sklearn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from apps.registry.conversion.report import ConversionReport  # noqa: E402
from apps.registry.conversion.scikit_learn import export_sklearn  # noqa: E402

SEED = 0
TEST_SIZE = 0.25
HIDDEN_UNITS = 64
INPUT_NAME = "input"


def train(X: np.ndarray, y: np.ndarray) -> Pipeline:
    model = Pipeline(
        [
            ("scale", StandardScaler()),
            ("mlp", MLPClassifier(hidden_layer_sizes=(HIDDEN_UNITS,), max_iter=1000, random_state=SEED)),
        ]
    )
    return model.fit(X, y)


def onnx_accuracy(path: Path, X: np.ndarray, y: np.ndarray) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    labels, _ = session.run(None, {INPUT_NAME: X.astype(np.float32)})
    return float(np.mean(labels == y))


def write_test_set(path: Path, X: np.ndarray, y: np.ndarray) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row, label in zip(X, y, strict=True):
            line = {"inputs": {INPUT_NAME: [[float(v) for v in row]]}, "label": str(int(label))}
            fh.write(json.dumps(line) + "\n")


def write_readme(path: Path, report: ConversionReport, counts: dict[str, int], accuracy: dict) -> None:
    path.write_text(
        README.format(
            **counts,
            sklearn_version=sklearn.__version__,
            hidden=HIDDEN_UNITS,
            seed=SEED,
            sklearn_accuracy=accuracy["sklearn"],
            onnx_accuracy=accuracy["onnx"],
            size=report.size_bytes,
            opset=report.opset,
            sha256=report.sha256,
            max_abs_diff=report.max_abs_diff,
            samples=report.samples_checked,
        ),
        encoding="utf-8",
    )


README = """# Digits demo classifier

A small classifier whose accuracy can be measured properly: scikit-learn's bundled
digits dataset (1,797 8x8 grey images of handwritten digits, pixel values 0..16, read from
the package, no download), split 75/25 stratified with `random_state={seed}`:
{train:,} training and {test} held-out test images.

Made by `scripts/train_digits.py` (needs `pip install -r requirements-extras.txt`):
a scikit-learn {sklearn_version} pipeline of `StandardScaler` and `MLPClassifier` (one
hidden layer of {hidden} ReLU units, `random_state={seed}`), converted to ONNX with
`apps.registry.conversion.scikit_learn.export_sklearn` (skl2onnx, no ZipMap).

| | test accuracy ({test} images) |
|---|---|
| scikit-learn | {sklearn_accuracy:.2%} |
| ONNX Runtime (model.onnx) | {onnx_accuracy:.2%} |

The conversion check compared ONNX Runtime with scikit-learn on all {samples:,} images:
the same labels, probabilities within {max_abs_diff:.2g}.

## Files

- `model.onnx`: {size:,} bytes, opset {opset}, sha256 `{sha256}`.
  Input `input` float32 `[N, 64]` (the 8x8 pixels row by row, 0..16, unscaled: the scaler
  is inside the model); outputs `label` int64 `[N]` (the digit) and `probabilities`
  float32 `[N, 10]`.
- `labels.txt`: `0` to `9`; index i of `probabilities` is digit i.
- `test.jsonl`: the {test} held-out test images, one per line, as a prediction request
  body plus the expected label: `{{"inputs": {{"input": [[64 numbers]]}}, "label": "7"}}`.

## Use

```sh
python manage.py register_model --name digits --task tensor \\
    --file demo/digits/model.onnx --labels demo/digits/labels.txt --alias production
head -1 demo/digits/test.jsonl \\
  | python3 -c 'import json, sys; print(json.dumps({{"inputs": json.load(sys.stdin)["inputs"]}}))' \\
  | curl -H "X-API-Key: $MLP_KEY" -H 'Content-Type: application/json' -d @- $API/models/digits/predict
```

Regenerate with `python scripts/train_digits.py`; the numbers above are rewritten with it.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "demo" / "digits")
    args = parser.parse_args(argv)
    out: Path = args.output_dir
    out.mkdir(parents=True, exist_ok=True)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, stratify=y, random_state=SEED
    )
    model = train(X_train, y_train)
    report = export_sklearn(model, X, out / "model.onnx", input_name=INPUT_NAME)
    accuracy = {
        "sklearn": float(model.score(X_test.astype(np.float32), y_test)),
        "onnx": onnx_accuracy(report.path, X_test, y_test),
    }
    (out / "labels.txt").write_text("".join(f"{digit}\n" for digit in range(10)), encoding="utf-8")
    write_test_set(out / "test.jsonl", X_test, y_test)
    write_readme(out / "README.md", report, {"train": len(X_train), "test": len(X_test)}, accuracy)
    print(f"Wrote {out}: test accuracy scikit-learn {accuracy['sklearn']:.2%}, ONNX {accuracy['onnx']:.2%}")
    print(json.dumps(report.as_dict(), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
