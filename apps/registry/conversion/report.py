"""What a conversion wrote, and how closely it matches the original model."""

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # ONNX Runtime's element type: "float", "int64", ...
    shape: tuple[int | str, ...]  # a string is a dynamic dimension, e.g. the batch


@dataclass(frozen=True)
class ConversionReport:
    """What was written, and how closely it matches the original model."""

    path: Path
    sha256: str
    size_bytes: int
    opset: int  # of the default ONNX domain
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    max_abs_diff: float  # largest |ONNX - original| over every compared output
    samples_checked: int  # rows (along the batch dimension) compared over all checks

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def conversion_report(
    path: Path, session: ort.InferenceSession, max_abs_diff: float, rows: int
) -> ConversionReport:
    data = path.read_bytes()
    model = onnx.load_model_from_string(data)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return ConversionReport(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        opset=opset,
        inputs=tuple(_describe(arg) for arg in session.get_inputs()),
        outputs=tuple(_describe(arg) for arg in session.get_outputs()),
        max_abs_diff=max_abs_diff,
        samples_checked=rows,
    )


def _describe(arg: ort.NodeArg) -> TensorInfo:
    shape = arg.shape if isinstance(arg.shape, list) else []
    return TensorInfo(
        name=arg.name,
        dtype=arg.type.removeprefix("tensor(").removesuffix(")"),
        shape=tuple(dim if isinstance(dim, int | str) else "?" for dim in shape),
    )
