"""Exporting a PyTorch module to ONNX with the torch.export-based exporter, checked against the module."""

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx

from apps.registry.conversion.checking import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    ConversionError,
    compare_outputs,
    cpu_session,
    require_converter,
)
from apps.registry.conversion.report import ConversionReport, conversion_report


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
    torch = require_converter("torch", "PyTorch export needs torch")
    require_converter("onnxscript", "The PyTorch ONNX exporter needs onnxscript")
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

    session = cpu_session(path)
    worst, rows = 0.0, 0
    for label, inputs in _torch_check_inputs(torch, example_inputs, random_checks, dynamic_batch, seed):
        with torch.no_grad():
            expected = _flatten_torch_outputs(module(*inputs))
        arrays = [x.detach().cpu().numpy() for x in inputs]
        actual = session.run(None, dict(zip(input_names, arrays, strict=True)))
        worst = max(worst, compare_outputs(expected, actual, atol=atol, rtol=rtol, check=label))
        rows += int(arrays[0].shape[0]) if arrays[0].ndim else 1
    return conversion_report(path, session, worst, rows)


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
