"""Shared by both converters: the tolerances, the error, loading a converter and the result,
and comparing the result's outputs with the original's."""

import importlib
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort

from apps.core.exceptions import UnprocessableInput
from apps.registry.validation import session_options

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3
INSTALL_HINT = "pip install -r requirements-extras.txt"


class ConversionError(UnprocessableInput):
    """The model could not be converted, or the ONNX result does not behave like the original."""

    code = "conversion_mismatch"


def require_converter(name: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConversionError(
            f"{purpose}, which is not installed: {INSTALL_HINT}", code="converter_missing"
        ) from exc


def cpu_session(path: Path) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(
            str(path), sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
        raise ConversionError(
            f"ONNX Runtime cannot load the converted model: {exc}", code="runtime_load_failed"
        ) from exc


def compare_outputs(
    expected: list[np.ndarray],
    actual: list[np.ndarray],
    *,
    atol: float,
    rtol: float,
    check: str,
    reshape: bool = False,
) -> float:
    """The largest |actual - expected|; raises ConversionError outside the tolerance."""
    if len(expected) != len(actual):
        raise ConversionError(f"{check}: the original gives {len(expected)} outputs, ONNX {len(actual)}.")
    worst = 0.0
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        want, got = np.asarray(want, dtype=np.float64), np.asarray(got, dtype=np.float64)
        if reshape and want.size == got.size:  # e.g. a regressor's [n] against ONNX's [n, 1]
            got = got.reshape(want.shape)
        if want.shape != got.shape:
            raise ConversionError(
                f"{check}: output {index} has shape {got.shape} in ONNX but {want.shape} in the original."
            )
        if not want.size:
            continue
        diff = float(np.nanmax(np.abs(got - want), initial=0.0))  # NaN in both is a match
        worst = max(worst, diff)
        if not np.allclose(got, want, atol=atol, rtol=rtol, equal_nan=True):
            raise ConversionError(
                f"{check}: output {index} differs from the original by up to {diff:.3g} "
                f"(tolerance atol={atol:g}, rtol={rtol:g}).",
                details={"check": check, "output": index, "max_abs_diff": diff, "atol": atol, "rtol": rtol},
            )
    return worst
