"""TorchScript (.pt) and torch.export (.pt2) archives to ONNX with torch.onnx, checked for parity.

TorchScript goes through the TorchScript-based exporter (`dynamo=False`): the torch.export
based one cannot take a ScriptModule. torch deprecates the former (it warns that it will be
removed), and the report says so. A .pt2 goes through the maintained exporter (`dynamo=True`).

Neither load runs pickled Python: torch.jit.load's unpickler builds only TorchScript values,
and `torch.load` is held to `weights_only=True` here, since torch.export.load falls back to
`weights_only=False` for the example inputs it stores (the web process refuses archives with
pickled weights before that).
"""

import functools
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from apps.registry.intake.child.common import (
    ConversionFailed,
    InputSpec,
    Parity,
    check_inputs,
    onnx_outputs,
    require,
    specs_from,
)

TORCHSCRIPT_EXPORTER_NOTE = (
    "Exported with torch.onnx.export(dynamo=False), the TorchScript-based exporter: the only one "
    "that takes a TorchScript module. torch deprecates it and will remove it; torch.export "
    "(.pt2) uploads use the maintained exporter."
)


def _torch() -> Any:
    torch: Any = require("torch", "torch", "PyTorch conversion")  # Any: its `load` is replaced below
    if not getattr(torch.load, "_weights_only_forced", False):
        original = torch.load

        @functools.wraps(original)
        def load(*args: Any, **kwargs: Any) -> Any:
            kwargs["weights_only"] = True  # never unpickle arbitrary objects in the converter
            return original(*args, **kwargs)

        load._weights_only_forced = True  # type: ignore[attr-defined]
        torch.load = load
    return torch


def convert_torchscript(job: dict, scratch: Path) -> dict:
    torch = _torch()
    try:
        module = torch.jit.load(job["source"], map_location="cpu").eval()
    except Exception as exc:
        raise ConversionFailed("load_failed", f"torch.jit.load could not load the archive: {exc}") from exc
    specs = specs_from(job["input_signature"])
    example = _tensors(torch, next(check_inputs(specs, job["seed"], 0))[1], specs)
    with torch.no_grad():
        names = _output_names(module(*example))
    dynamic = {s.name: {i: f"{s.name}_dim{i}" for i, d in enumerate(s.shape) if d == -1} for s in specs}
    try:
        with torch.no_grad(), warnings.catch_warnings(record=True):
            torch.onnx.export(
                module,
                example,
                job["output"],
                input_names=[s.name for s in specs],
                output_names=names,
                dynamic_axes={**{k: v for k, v in dynamic.items() if v}, **{n: {0: "batch"} for n in names}},
                opset_version=job["opset"],
                dynamo=False,
            )
    except Exception as exc:
        raise ConversionFailed(
            "export_failed", f"torch.onnx.export could not convert the module: {exc}"
        ) from exc
    parity = _check(torch, module, specs, job)
    return _result(
        torch,
        "torchscript",
        specs,
        parity,
        exporter="torchscript (dynamo=False)",
        note=TORCHSCRIPT_EXPORTER_NOTE,
    )


def convert_torch_export(job: dict, scratch: Path) -> dict:
    torch = _torch()
    require("onnxscript", "onnxscript", "The torch.export ONNX exporter")
    try:
        program = torch.export.load(job["source"])
    except Exception as exc:
        raise ConversionFailed("load_failed", f"torch.export.load could not load the archive: {exc}") from exc
    specs = specs_from(job["input_signature"]) if job.get("input_signature") else _program_specs(program)
    try:
        with torch.no_grad(), warnings.catch_warnings(record=True):
            onnx_program = torch.onnx.export(
                program, (), input_names=[s.name for s in specs], opset_version=job["opset"], dynamo=True
            )
            onnx_program.save(job["output"], external_data=False)
    except Exception as exc:
        raise ConversionFailed(
            "export_failed", f"torch.onnx.export could not convert the program: {exc}"
        ) from exc
    parity = _check(torch, program.module(), specs, job)
    return _result(torch, "torch-export", specs, parity, exporter="torch.export (dynamo=True)")


def _program_specs(program: Any) -> list[InputSpec]:
    """The user inputs of an exported program: names, dtypes, and shapes (-1 where symbolic)."""
    specs = []
    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    for spec in program.graph_signature.input_specs:
        if spec.kind.name != "USER_INPUT":
            continue
        value = placeholders[spec.arg.name].meta["val"]
        shape = [d if isinstance(d, int) else -1 for d in value.shape]
        specs.append(InputSpec(spec.arg.name, str(value.dtype).removeprefix("torch."), shape))
    return specs


def _tensors(torch: Any, feeds: dict, specs: list[InputSpec]) -> tuple:
    return tuple(torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in specs)


def _output_names(output: Any) -> list[str]:
    count = len(_flatten(output))
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def _flatten(output: Any) -> list[np.ndarray]:
    if isinstance(output, dict):
        output = list(output.values())
    if not isinstance(output, list | tuple):
        output = [output]
    return [item.detach().cpu().numpy() for item in output]


def _check(torch: Any, module: Any, specs: list[InputSpec], job: dict) -> Parity:
    parity = Parity(job["atol"])
    for label, feeds in check_inputs(specs, job["seed"], job["random_checks"]):
        with torch.no_grad():
            expected = _flatten(module(*_tensors(torch, feeds, specs)))
        names, actual = onnx_outputs(job["output"], feeds)
        parity.compare(label, expected, actual, names)
    return parity


def _result(
    torch: Any, fmt: str, specs: list[InputSpec], parity: Parity, *, exporter: str, note: str = ""
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "format": fmt,
        "inputs": [{"name": s.name, "dtype": s.dtype, "shape": s.shape} for s in specs],
        "framework": {"torch": torch.__version__},
        "converter": {"torch.onnx": torch.__version__, "exporter": exporter},
        "parity": parity.report(),
    }
    if note:
        result["converter"]["note"] = note
    return result
