"""What the child's converters share: their error, the optional imports, the parity check."""

import importlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

INSTALL_HINT = "pip install -r requirements-extras.txt"


class ConversionFailed(Exception):
    """The conversion cannot go on; `code` is stable, `message` says why for a person."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional converter dependency, or fail naming the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if _installed(module):  # there but failing to load: most often the memory limit
            if "map segment" in str(exc) or "memory" in str(exc).lower():
                raise ConversionFailed("out_of_memory", f"Out of memory loading {module}: {exc}.") from exc
            raise ConversionFailed("load_failed", f"{module} is installed but fails to load: {exc}.") from exc
        raise ConversionFailed(
            "converter_missing",
            f"{purpose} needs {extra}, not installed on the conversion worker: {INSTALL_HINT}",
        ) from exc


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a blocked module (tests) or a broken package
        return False


def version_of(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


@dataclass
class InputSpec:
    name: str
    dtype: str  # numpy's name: float32, int64, ...
    shape: list[int]  # -1: dynamic

    def batch_dynamic(self) -> bool:
        return bool(self.shape) and self.shape[0] == -1


def specs_from(entries: list[dict]) -> list[InputSpec]:
    return [InputSpec(e["name"], e["dtype"], list(e["shape"])) for e in entries]


def check_inputs(specs: list[InputSpec], seed: int, random_checks: int) -> Iterator[tuple[str, dict]]:
    """(label, {name: array}) to compare on: one sample input in [0, 1) at batch 1 (the range
    of scaled pixels and most normalised features), then standard-normal random inputs, at
    batch 1 and, for a dynamic batch, at larger batches too."""
    dims = [d for spec in specs for d in spec.shape[1:]]
    if -1 in dims:
        raise ConversionFailed(
            "input_signature_needed",
            "The model's inputs have dynamic dimensions besides the batch; give their sizes in the "
            "upload's input_signature field.",
        )
    rng = np.random.default_rng(seed)
    yield "sample input (uniform [0, 1), batch 1)", {s.name: _draw(s, 1, rng, uniform=True) for s in specs}
    for number in range(random_checks):
        batch = 1 + number if all(s.batch_dynamic() for s in specs) else 1
        yield (
            f"random input #{number + 1} (normal, batch {batch})",
            {s.name: _draw(s, batch, rng) for s in specs},
        )


def _draw(spec: InputSpec, batch: int, rng: np.random.Generator, uniform: bool = False) -> np.ndarray:
    shape = [batch if i == 0 and d == -1 else d for i, d in enumerate(spec.shape)]
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "f":
        values = rng.random(shape) if uniform else rng.standard_normal(shape)
        return values.astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    return rng.integers(0, 10, size=shape).astype(dtype)  # an index or count: small and valid


@dataclass
class Parity:
    """Per check, the largest |ONNX - original| of each output; float outputs must stay within
    `atol`, other outputs must be equal."""

    atol: float
    checks: list[dict] = field(default_factory=list)

    def compare(self, label: str, expected: list[Any], actual: list[Any], names: list[str]) -> None:
        if len(expected) != len(actual):
            raise ConversionFailed(
                "conversion_mismatch",
                f"{label}: the original gives {len(expected)} outputs, ONNX {len(actual)}.",
            )
        diffs = {}
        for name, want, got in zip(names, expected, actual, strict=True):
            want, got = np.asarray(want), np.asarray(got)
            if want.size == got.size and want.shape != got.shape:
                got = got.reshape(want.shape)  # e.g. [n] against [n, 1]
            if want.shape != got.shape:
                raise ConversionFailed(
                    "conversion_mismatch",
                    f"{label}: output '{name}' has shape {list(got.shape)} in ONNX, "
                    f"{list(want.shape)} in the original.",
                )
            diff = _max_abs_diff(want, got)
            diffs[name] = diff
            exact = want.dtype.kind not in "fc"
            if (exact and diff != 0) or diff > self.atol:
                self.checks.append({"check": label, "max_abs_diff": diffs})
                raise ConversionFailed(
                    "conversion_mismatch",
                    f"{label}: output '{name}' of the ONNX model differs from the original by up to "
                    f"{diff:.3g} (tolerance: max abs diff <= {0 if exact else self.atol:g}).",
                )
        self.checks.append({"check": label, "max_abs_diff": diffs})

    def report(self) -> dict:
        worst = max((d for check in self.checks for d in check["max_abs_diff"].values()), default=0.0)
        return {"tolerance": {"max_abs_diff": self.atol}, "max_abs_diff": worst, "checks": self.checks}


def _max_abs_diff(want: np.ndarray, got: np.ndarray) -> float:
    if not want.size:
        return 0.0
    if want.dtype.kind in "fc":
        delta = np.abs(got.astype(np.float64) - want.astype(np.float64))
        return float(np.nanmax(delta, initial=0.0))  # NaN in both is a match
    return float((got != want).sum())  # count of differing elements for labels/indices


def onnx_outputs(path: str, feeds: dict) -> tuple[list[str], list[np.ndarray]]:
    """Run the ONNX file on the CPU as the platform serves it (one thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return names, session.run(None, feeds)


def unknown_ops(path: str) -> list[str]:
    """Operators of the ONNX file that no ONNX (or ONNX Runtime contrib) schema knows: what
    tf2onnx leaves in place of a TensorFlow op it cannot convert."""
    import onnx

    model = onnx.load(path)
    known_domains = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"}
    unknown = set()
    for node in model.graph.node:
        if node.domain not in known_domains or (
            node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type)
        ):
            unknown.add(node.op_type)
    return sorted(unknown)
