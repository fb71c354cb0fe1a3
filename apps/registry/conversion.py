"""Converting PyTorch modules and scikit-learn estimators to ONNX, checked against the original.

`export_torch` and `export_sklearn` write one self-contained .onnx file, run it with
ONNX Runtime on the CPU (with the session options the platform serves with) and compare
its outputs with the original model's on sample inputs. A result outside the tolerance
raises `ConversionError` (code `conversion_mismatch`) and is never handed on silently.

The converters are optional extras (requirements-extras.txt): the platform runs without
them, so they are imported inside the functions, and a missing one raises
`ConversionError` with code `converter_missing` naming what to install.

PyTorch export uses the torch.export-based ("dynamo") exporter, the default and the
maintained one since torch 2.9; the TorchScript exporter (`dynamo=False`) still works in
torch 2.13 but warns that it will be removed. The dynamo exporter needs `onnxscript`
(pure Python, pinned in requirements-extras.txt); neither needs a network.
"""

import contextlib
import hashlib
import importlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from apps.core.exceptions import UnprocessableInput
from apps.registry.validation import session_options

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3
INSTALL_HINT = "pip install -r requirements-extras.txt"


class ConversionError(UnprocessableInput):
    """The model could not be converted, or the ONNX result does not behave like the original."""

    code = "conversion_mismatch"


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


# --- PyTorch -----------------------------------------------------------------------------------


def export_torch(
    module: Any,
    example_inputs: tuple,
    path: Path,
    *,
    input_names: Sequence[str] = ("input",),
    output_names: Sequence[str] = ("output",),
    dynamic_batch: bool = True,
    opset: int = 18,
    random_checks: int = 3,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    seed: int = 0,
) -> ConversionReport:
    """Export a `torch.nn.Module` to ONNX at `path` and check it against the module.

    The module is put in eval mode (dropout off, batch norm with its running statistics),
    as it will serve. `example_inputs` holds one tensor per model input; with
    `dynamic_batch` the first dimension of every input is exported as dynamic.

    The ONNX outputs are compared with the module's on `example_inputs`, on
    `random_checks` random inputs of the same shapes and, with `dynamic_batch`, on one
    random batch of a different size (floating inputs are drawn from a standard normal;
    integer and boolean inputs reuse rows of the examples, whose valid range is unknown).
    Every element must satisfy |onnx - torch| <= atol + rtol * |torch|.
    """
    torch = _require("torch", "PyTorch export needs torch")
    _require("onnxscript", "The PyTorch ONNX exporter needs onnxscript")
    example_inputs = tuple(example_inputs)
    if len(input_names) != len(example_inputs):
        raise ConversionError(
            f"{len(example_inputs)} example inputs but {len(input_names)} input names.", code="invalid_input"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    _torch_onnx_export(torch, module, example_inputs, path, input_names, output_names, dynamic_batch, opset)
    _strip_exporter_metadata(path)

    session = _session(path)
    worst, rows = 0.0, 0
    for label, inputs in _torch_check_inputs(torch, example_inputs, random_checks, dynamic_batch, seed):
        with torch.no_grad():
            expected = _flatten_torch_outputs(module(*inputs))
        arrays = [x.detach().cpu().numpy() for x in inputs]
        actual = session.run(None, dict(zip(input_names, arrays, strict=True)))
        worst = max(worst, _compare(expected, actual, atol=atol, rtol=rtol, check=label))
        rows += int(arrays[0].shape[0]) if arrays[0].ndim else 1
    return _report(path, session, worst, rows)


def _torch_onnx_export(
    torch: ModuleType,
    module: Any,
    example_inputs: tuple,
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_batch: bool,
    opset: int,
) -> None:
    # Dim.DYNAMIC, unlike a named Dim, is not specialised away when the example batch is 1.
    batch = {0: torch.export.Dim.DYNAMIC}
    dynamic_shapes = tuple(batch if x.dim() else None for x in example_inputs) if dynamic_batch else None
    try:
        with torch.no_grad(), _quiet_exporter():
            torch.onnx.export(
                module,
                example_inputs,
                str(path),
                input_names=list(input_names),
                output_names=list(output_names),
                opset_version=opset,
                dynamo=True,
                external_data=False,  # the registry takes one self-contained file
                dynamic_shapes=dynamic_shapes,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; its message is the useful part
        raise ConversionError(f"torch.onnx.export failed: {exc}", code="export_failed") from exc


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's chatter: INFO lines for each optimisation pass, a warning per
    torchvision operator it cannot register, and torch's own FutureWarnings. Errors still show."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _torch_check_inputs(
    torch: ModuleType, examples: tuple, random_checks: int, dynamic_batch: bool, seed: int
) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """(label, inputs) pairs to compare on: the examples, then random inputs."""
    generator = torch.Generator().manual_seed(seed)
    yield "example inputs", examples
    for number in range(1, random_checks + 1):
        yield (
            f"random inputs #{number}",
            tuple(_random_like(torch, x, x.shape[:1], generator) for x in examples),
        )
    if dynamic_batch and all(x.dim() for x in examples):
        batch = int(examples[0].shape[0]) + 2
        yield (
            f"random inputs at batch {batch}",
            tuple(_random_like(torch, x, (batch,), generator) for x in examples),
        )


def _random_like(torch: ModuleType, example: Any, batch_shape: tuple, generator: Any) -> Any:
    shape = (*batch_shape, *example.shape[1:]) if example.dim() else ()
    if example.is_floating_point():
        return torch.randn(shape, generator=generator, dtype=example.dtype)
    if not example.dim():
        return example
    rows = torch.randint(0, example.shape[0], batch_shape, generator=generator)
    return example[rows]


def _flatten_torch_outputs(output: Any) -> list[np.ndarray]:
    """A module may return a tensor, a tuple or list of tensors, or a dict of them."""
    if isinstance(output, dict):
        output = list(output.values())
    if not isinstance(output, list | tuple):
        output = [output]
    return [item.detach().cpu().numpy() for item in output]


def _strip_exporter_metadata(path: Path) -> None:
    """Drop the exporter's debug metadata (stack traces with local file paths, FX node dumps).

    Useless at inference, and it makes the bytes depend on where the export ran: without
    it the same module converts to the same file, so the registry spots a re-upload.
    """
    model = onnx.load(str(path))
    del model.metadata_props[:]
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
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    graphs.append(attribute.g)
                graphs.extend(attribute.graphs)
    onnx.save_model(model, str(path), save_as_external_data=False)


# --- scikit-learn ------------------------------------------------------------------------------


def export_sklearn(
    estimator: Any,
    sample_X: Any,
    path: Path,
    *,
    target_opset: int | dict[str, int] | None = None,
    input_name: str = "input",
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> ConversionReport:
    """Convert a fitted scikit-learn estimator or pipeline to ONNX at `path` and check it.

    The model takes one float32 input `input_name` of shape [batch, n_features], where
    n_features is the number of columns of `sample_X`. A classifier is converted without
    the ZipMap operator, so its outputs are two plain tensors, `label` [batch] and
    `probabilities` [batch, classes]. `target_opset=None` lets skl2onnx pick the newest
    opset it was tested with.

    Checked on `sample_X` (as float32): a classifier's ONNX labels must equal
    `predict` and its probabilities be close to `predict_proba`; a regressor's output
    close to `predict`; a transformer's close to `transform`.
    """
    skl2onnx = _require("skl2onnx", "scikit-learn conversion needs skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.base import is_classifier

    X = np.asarray(sample_X, dtype=np.float32)
    if X.ndim != 2 or not X.shape[0]:
        raise ConversionError(f"sample_X must be a non-empty 2-D array, not {X.shape}.", code="invalid_input")
    classifier = is_classifier(estimator)
    try:
        model = skl2onnx.to_onnx(
            estimator,
            initial_types=[(input_name, FloatTensorType([None, X.shape[1]]))],
            target_opset=target_opset,
            options={"zipmap": False} if classifier else None,
        )
    except Exception as exc:  # unsupported estimators raise various types
        raise ConversionError(f"skl2onnx could not convert the model: {exc}", code="export_failed") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))

    session = _session(path)
    actual = session.run(None, {input_name: X})
    if classifier:
        _check_labels(actual[0], estimator.predict(X))
        has_proba = hasattr(estimator, "predict_proba") and len(actual) > 1
        expected = [estimator.predict_proba(X)] if has_proba else []
        actual = actual[1:2] if expected else []
    elif hasattr(estimator, "predict"):
        expected, actual = [estimator.predict(X)], actual[:1]
    else:
        expected, actual = [estimator.transform(X)], actual[:1]
    worst = _compare(expected, actual, atol=atol, rtol=rtol, check="sample_X", reshape=True)
    return _report(path, session, worst, X.shape[0])


def _check_labels(actual: np.ndarray, expected: np.ndarray) -> None:
    # Compared as text: string class labels come back from ONNX Runtime as objects.
    differ = np.asarray(actual).astype(str).ravel() != np.asarray(expected).astype(str).ravel()
    if differ.any():
        raise ConversionError(
            f"The ONNX model predicts a different label for {int(differ.sum())} of {differ.size} samples.",
            details={"mismatched_labels": int(differ.sum()), "samples": int(differ.size)},
        )


# --- Shared ------------------------------------------------------------------------------------


def _require(name: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConversionError(
            f"{purpose}, which is not installed: {INSTALL_HINT}", code="converter_missing"
        ) from exc


def _session(path: Path) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(
            str(path), sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
        raise ConversionError(
            f"ONNX Runtime cannot load the converted model: {exc}", code="runtime_load_failed"
        ) from exc


def _compare(
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


def _report(path: Path, session: ort.InferenceSession, max_abs_diff: float, rows: int) -> ConversionReport:
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
