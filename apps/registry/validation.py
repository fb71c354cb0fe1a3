"""Checking ONNX files: a quick structural inspection at upload, a full validation on a worker.

No ORM imports here: this module takes a file path and returns plain data, so
web processes, workers and the command line share it unchanged.
"""

import math
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError
from onnx import TensorProto

# ONNX Runtime type strings → NumPy dtypes for generating test inputs.
_ORT_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


class ModelFileError(Exception):
    """The file is not a usable model; `code` is stable, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class ModelSummary:
    ir_version: int
    opsets: dict[str, int]
    producer: str
    input_names: list[str]
    output_names: list[str]


@dataclass
class ValidationReport:
    signature: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)


def _types_holding_tensors() -> frozenset[str]:
    """The ONNX message types that can hold a TensorProto, however deep (a fixed point over
    the schema): initializers, nodes, attributes, graphs, functions, sparse tensors,
    training info. Not types and value infos, which can be most of a large model's bytes."""
    seen, queue = {}, [onnx.ModelProto.DESCRIPTOR]
    while queue:
        descriptor = queue.pop()
        if descriptor.full_name not in seen:
            seen[descriptor.full_name] = descriptor
            queue += [f.message_type for f in descriptor.fields if f.message_type is not None]
    holding = {TensorProto.DESCRIPTOR.full_name}
    changed = True
    while changed:
        changed = False
        for name, descriptor in seen.items():
            if name not in holding and any(
                f.message_type is not None and f.message_type.full_name in holding for f in descriptor.fields
            ):
                holding.add(name)
                changed = True
    return frozenset(holding)


_HOLDING_TENSORS = _types_holding_tensors()


def _iter_tensors(message: Any) -> Iterator[TensorProto]:
    """Every TensorProto anywhere in an ONNX message: initializers, sparse values and
    indices, node attributes, subgraphs, model-local functions, training info. Walked by
    the protobuf schema, so no place a tensor can sit is missed."""
    if isinstance(message, TensorProto):
        yield message
        return
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None or descriptor.message_type.full_name not in _HOLDING_TENSORS:
            continue
        if descriptor.is_repeated:
            for item in value:
                yield from _iter_tensors(item)
        else:
            yield from _iter_tensors(value)


def inspect_model_file(path: Path | str) -> ModelSummary:
    """Parse the file as an ONNX ModelProto and check that it is self-contained.

    Cheap enough to run in the upload request, so that bytes which are not ONNX,
    or a model that points at external data files, are refused at once.
    """
    try:
        with open(path, "rb") as fh:
            model = onnx.load_model(fh, load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise ModelFileError("not_onnx", f"The file is not an ONNX model: {exc}") from exc
    # Protobuf parses many byte strings as an empty or partial message; a real
    # model always names its IR version, an opset and a graph with nodes.
    if model.ir_version <= 0 or not model.opset_import or not model.graph.node:
        raise ModelFileError(
            "not_onnx", "The file is not an ONNX model: no IR version, opset or graph nodes."
        )
    for tensor in _iter_tensors(model):
        if tensor.data_location == TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "?")
            raise ModelFileError(
                "external_data_not_allowed",
                f"Tensor '{tensor.name}' refers to an external data file ({location!r}); "
                "a model must be one self-contained .onnx file.",
            )
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    if not inputs:
        raise ModelFileError("no_inputs", "The model has no inputs.")
    if not model.graph.output:
        raise ModelFileError("no_outputs", "The model has no outputs.")
    return ModelSummary(
        ir_version=model.ir_version,
        opsets={o.domain or "ai.onnx": o.version for o in model.opset_import},
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        input_names=inputs,
        output_names=[o.name for o in model.graph.output],
    )


def session_options(intra_op_threads: int = 1) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads burn CPU between calls; a server shares its CPU.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def _describe(arg: ort.NodeArg) -> dict[str, Any]:
    shape = arg.shape if isinstance(arg.shape, list) else []
    return {
        "name": arg.name,
        "dtype": arg.type.removeprefix("tensor(").removesuffix(")"),
        "shape": [dim if isinstance(dim, int) and dim >= 0 else -1 for dim in shape],
    }


# The largest test input validation builds (64 Mi values: 256 MiB as float32). A declared
# shape, or a preprocessing size, past it would take the worker's memory, not test a model.
MAX_TEST_INPUT_VALUES = 1 << 26


def _test_shape(arg: ort.NodeArg, batch: int, spatial_hint: int | None) -> list[int]:
    dims = arg.shape if isinstance(arg.shape, list) else []
    shape = []
    for position, dim in enumerate(dims):
        if isinstance(dim, int) and dim >= 0:
            shape.append(dim)
        elif position == 0:
            shape.append(batch)
        else:
            # A dynamic non-batch dim: use the image size the preprocessing produces
            # for spatial dims of a 4-D input, 1 otherwise.
            shape.append(spatial_hint if spatial_hint and len(dims) == 4 and position >= 1 else 1)
    return shape


def _fits(args: list[ort.NodeArg], batch: int, spatial_hint: int | None) -> bool:
    return all(math.prod(_test_shape(a, batch, spatial_hint)) <= MAX_TEST_INPUT_VALUES for a in args)


def _make_input(
    arg: ort.NodeArg, batch: int, spatial_hint: int | None, rng: np.random.Generator
) -> np.ndarray:
    dtype = _ORT_DTYPES.get(arg.type)
    if dtype is None:
        raise ModelFileError(
            "unsupported_input_type", f"Input '{arg.name}' has type {arg.type}, which is not supported."
        )
    shape = _test_shape(arg, batch, spatial_hint)
    if math.prod(shape) > MAX_TEST_INPUT_VALUES:
        raise ModelFileError(
            "input_too_large",
            f"Input '{arg.name}' would need {math.prod(shape)} values (shape {shape}) for one test "
            f"inference; at most {MAX_TEST_INPUT_VALUES} are tested. Check the declared shape or the "
            "preprocessing's resize and crop.",
        )
    if np.issubdtype(dtype, np.floating):  # float32 values, never a float64 array in between
        return rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
    return np.zeros(shape, dtype=dtype)


def _has_dynamic_batch(args: list[ort.NodeArg]) -> bool:
    return all(isinstance(a.shape, list) and a.shape and not isinstance(a.shape[0], int) for a in args)


def _percentile(samples: list[float], pct: float) -> float:
    return float(np.percentile(np.asarray(samples), pct))


def validate_model_file(
    path: Path | str,
    *,
    intra_op_threads: int = 1,
    latency_runs: int = 30,
    throughput_batch: int = 8,
    throughput_runs: int = 5,
    spatial_hint: int | None = None,
    label_count: int | None = None,
) -> ValidationReport:
    """Fully validate a model file and measure it. Raises ModelFileError with a reason.

    Steps: structural inspection, `onnx.checker`, an ONNX Runtime session (which
    fails on unsupported operators or opsets), the signature, one inference on
    generated inputs, then load time, latency p50/p95 at batch 1 and throughput
    at `throughput_batch` when the batch dimension is dynamic.
    """
    path = Path(path)
    summary = inspect_model_file(path)
    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, Exception) as exc:  # the checker raises several types
        raise ModelFileError("onnx_check_failed", f"onnx.checker rejected the model: {exc}") from exc

    started = time.perf_counter()
    try:
        session = ort.InferenceSession(
            str(path), sess_options=session_options(intra_op_threads), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
        raise ModelFileError("runtime_load_failed", f"ONNX Runtime cannot load the model: {exc}") from exc
    load_ms = (time.perf_counter() - started) * 1000

    inputs, outputs = session.get_inputs(), session.get_outputs()
    signature = {
        "inputs": [_describe(a) for a in inputs],
        "outputs": [_describe(a) for a in outputs],
        "dynamic_batch": _has_dynamic_batch(inputs),
    }
    if label_count:
        check_label_count(signature, label_count)

    rng = np.random.default_rng(0)
    feed = {a.name: _make_input(a, 1, spatial_hint, rng) for a in inputs}
    try:
        session.run(None, feed)  # the first run also warms the session up
    except Exception as exc:
        raise ModelFileError("inference_failed", f"A test inference failed: {exc}") from exc

    latencies = _time_runs(session, feed, latency_runs)
    metrics: dict[str, Any] = {
        "size_bytes": path.stat().st_size,
        "load_ms": round(load_ms, 2),
        "latency_ms": {
            "batch": 1,
            "runs": latency_runs,
            "p50": round(_percentile(latencies, 50), 3),
            "p95": round(_percentile(latencies, 95), 3),
            "mean": round(statistics.fmean(latencies), 3),
        },
        "intra_op_threads": intra_op_threads,
        "onnxruntime": ort.__version__,
        "ir_version": summary.ir_version,
        "opsets": summary.opsets,
        "producer": summary.producer,
    }
    # The batch run only when its inputs stay within the test limit (batch 1 alone otherwise).
    if signature["dynamic_batch"] and throughput_batch > 1 and _fits(inputs, throughput_batch, spatial_hint):
        batch_feed = {a.name: _make_input(a, throughput_batch, spatial_hint, rng) for a in inputs}
        try:
            session.run(None, batch_feed)
        except Exception as exc:
            raise ModelFileError(
                "inference_failed", f"A test inference at batch {throughput_batch} failed: {exc}"
            ) from exc
        batch_latencies = _time_runs(session, batch_feed, throughput_runs)
        metrics["batch_latency_ms"] = {
            "batch": throughput_batch,
            "runs": throughput_runs,
            "p50": round(_percentile(batch_latencies, 50), 3),
            "p95": round(_percentile(batch_latencies, 95), 3),
        }
        metrics["throughput_per_s"] = {
            "batch": throughput_batch,
            "items_per_s": round(throughput_batch * 1000 / statistics.fmean(batch_latencies), 1),
        }
    return ValidationReport(signature=signature, metrics=metrics)


def _time_runs(session: ort.InferenceSession, feed: dict[str, np.ndarray], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, feed)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


_FLOAT_DTYPES = frozenset({"float", "float16", "double", "bfloat16"})


def class_scores_output(signature: dict[str, Any]) -> dict[str, Any]:
    """The output holding a classifier's scores: the first floating-point one with a class
    dimension (batch, classes, ...), else the first output. A converted scikit-learn
    classifier puts its predicted `label` (shape [N], int64) before its `probabilities`
    ([N, classes]), so "the first output" alone would miss the classes."""
    outputs = signature["outputs"]
    for output in outputs:
        if output["dtype"] in _FLOAT_DTYPES and len(output["shape"]) >= 2:
            return output
    return outputs[0]


def check_label_count(signature: dict[str, Any], label_count: int) -> None:
    """A classifier's labels must match its class dimension, when that is known."""
    output = class_scores_output(signature)
    classes = output["shape"][-1] if output["shape"] else -1
    if classes > 0 and classes != label_count:
        raise ModelFileError(
            "labels_mismatch",
            f"The model's class scores ('{output['name']}') have {classes} classes "
            f"but {label_count} labels were given.",
        )
