"""Optimization recipes: ONNX file in, ONNX file out, with ONNX Runtime's and ONNX's own
tools (no quantizer of our own). No ORM imports: the worker calls these with paths.

- dynamic-int8: weights int8, activations quantized at run time (`quantize_dynamic`).
- static-int8: QDQ, per-channel weights, activations calibrated on a calibration set
  (`quantize_static` with MinMax, Entropy or Percentile).
- fp16: float16 weights and activations, inputs and outputs kept float32. On the CPU
  execution provider most kernels have no float16 version, so ONNX Runtime inserts casts
  and the model usually runs slower than fp32; it pays on GPUs (CUDA, TensorRT, DirectML).
- graph: ONNX shape inference, then ONNX Runtime's offline graph optimisation (extended
  level: fusions that stay portable; `all` would add layout changes tied to this CPU).
"""

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_dynamic,
    quantize_static,
)

logger = logging.getLogger(__name__)

RECIPES = ("dynamic-int8", "static-int8", "auto-int8", "fp16", "graph")
CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


# Tensors whose type shape inference cannot tell (outputs of ai.onnx.ml operators such as
# scikit-learn's Scaler) are float: ONNX Runtime's own advice for such graphs.
_EXTRA = {"DefaultTensorType": onnx.TensorProto.FLOAT}


class RecipeError(Exception):
    """The tools could not optimise this model; `message` is their reason."""

    def __init__(self, message: str, code: str = "optimization_failed") -> None:
        super().__init__(message)
        self.message, self.code = message, code


class _Feeds(CalibrationDataReader):
    """The calibration inputs, in a list so that the quantizer can read them a slice at a
    time (`set_range`, for MinMax one item per slice: see quantize_qdq)."""

    def __init__(self, feeds: Iterator[dict[str, np.ndarray]]) -> None:
        self._all = list(feeds)
        self._feeds = iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._feeds = iter(self._all[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def preprocessed(source: Path, work: Path) -> Path:
    """ONNX Runtime's recommended step before quantization: shape inference and fusions."""
    out = work / "pre.onnx"
    try:
        quant_pre_process(str(source), str(out), skip_symbolic_shape=True)
    except Exception as exc:  # some graphs defeat the pre-processing; quantize them as they are
        logger.warning("quant_pre_process failed (%s); quantizing the model as it is", exc)
        return source
    return out


def _on_preprocessed(source: Path, quantize: Callable[[Path], None]) -> None:
    """Quantize the pre-processed model; if the quantizer refuses it (its rewrites can
    confuse the quantizer on some graphs, e.g. with ai.onnx.ml operators), the original."""
    with tempfile.TemporaryDirectory() as work:
        model = preprocessed(source, Path(work))
        try:
            quantize(model)
        except Exception as exc:
            if model == source:
                raise
            logger.warning("Quantizing the pre-processed model failed (%s); trying the original", exc)
            quantize(source)


def dynamic_int8(source: Path, target: Path, *, per_channel: bool = False) -> None:
    _on_preprocessed(
        source,
        lambda model: quantize_dynamic(
            str(model),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            extra_options=_EXTRA,
        ),
    )


def static_int8(
    source: Path,
    target: Path,
    *,
    calibration: Callable[[], Iterator[dict[str, np.ndarray]]],
    method: str = "minmax",
    per_channel: bool = True,
) -> None:
    _on_preprocessed(
        source,
        lambda model: quantize_qdq(
            model, target, calibration=calibration, method=method, per_channel=per_channel
        ),
    )


def quantize_qdq(
    model: Path,
    target: Path,
    *,
    calibration: Callable[[], Iterator[dict[str, np.ndarray]]] | None,
    method: str = "minmax",
    per_channel: bool = True,
    exclude: list[str] | None = None,
    cache: Path | None = None,
) -> None:
    """Static QDQ quantization of an (already pre-processed) model. With `cache`, the
    calibrated ranges are written there once and read back on later calls, so a search
    quantizes the same model many ways (other nodes left in float) without calibrating again."""
    if method not in CALIBRATION_METHODS:
        raise RecipeError(f"Unknown calibration method '{method}'.", code="invalid_recipe")
    # ONNX Runtime's calibrators print their progress; keep it out of a command's --json output.
    with contextlib.redirect_stdout(io.StringIO()):
        _quantize_static(model, target, calibration, method, per_channel, exclude, cache)


def _quantize_static(
    model: Path,
    target: Path,
    calibration: Callable[[], Iterator[dict[str, np.ndarray]]] | None,
    method: str,
    per_channel: bool,
    exclude: list[str] | None,
    cache: Path | None,
) -> None:
    quantize_static(
        str(model),
        str(target),
        _Feeds(calibration()) if calibration is not None else None,
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude or None,
        calibrate_method=CALIBRATION_METHODS[method],
        # MinMax reads one input at a time and merges its ranges into the running min/max,
        # instead of keeping every input's activations in memory. (ONNX Runtime 1.32's
        # CalibMaxIntermediateOutputs, used before, drops each full batch of outputs
        # without merging it: only the last len % 16 inputs were calibrated on.)
        extra_options={**_EXTRA, "CalibTensorRangeSymmetric": False, **_strided(method)},
        calibration_cache_path=cache,
    )


def _strided(method: str) -> dict[str, int]:
    return {"CalibStridedMinMax": 1} if method == "minmax" else {}


def fp16(source: Path, target: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    converted = OnnxModel(convert_float_to_float16(onnx.load(str(source)), keep_io_types=True))
    converted.topological_sort()  # the converter appends the input casts after their users
    onnx.save(converted.model, str(target))


def graph(source: Path, target: Path) -> None:
    with tempfile.TemporaryDirectory() as work:
        inferred = Path(work) / "inferred.onnx"
        onnx.save(onnx.shape_inference.infer_shapes(onnx.load(str(source))), str(inferred))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(target)
        ort.InferenceSession(str(inferred), sess_options=options, providers=["CPUExecutionProvider"])


def apply(
    recipe: str,
    source: Path,
    target: Path,
    *,
    calibration: Callable[[], Iterator[dict[str, np.ndarray]]] | None = None,
    method: str = "minmax",
    per_channel: bool | None = None,
) -> None:
    """Run `recipe` from `source` to `target`; RecipeError with the tools' reason on failure."""
    try:
        if recipe == "dynamic-int8":
            dynamic_int8(source, target, per_channel=bool(per_channel))
        elif recipe == "static-int8":
            if calibration is None:
                raise RecipeError("static-int8 needs a calibration set.", code="calibration_set_required")
            static_int8(
                source, target, calibration=calibration, method=method, per_channel=per_channel is not False
            )
        elif recipe == "fp16":
            fp16(source, target)
        elif recipe == "graph":
            graph(source, target)
        else:
            raise RecipeError(f"Unknown recipe '{recipe}'.", code="invalid_recipe")
    except RecipeError:
        raise
    except Exception as exc:  # ONNX Runtime's or ONNX's own reason, for the maintainer
        raise RecipeError(f"{type(exc).__name__}: {exc}") from exc
    if not target.is_file():
        raise RecipeError("The tools produced no model file.")
