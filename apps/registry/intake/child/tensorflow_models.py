"""TensorFlow SavedModel and Keras (.keras) files to ONNX with tf2onnx, checked for parity.

A Keras file is loaded with `safe_mode=True` (no Python bytecode from Lambda layers),
exported as a SavedModel and converted like one: tf2onnx's `from_keras` fails on Keras 3.
"""

import logging
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Any

from apps.registry.intake.child.common import (
    ConversionFailed,
    Parity,
    check_inputs,
    onnx_outputs,
    require,
    specs_from,
    unknown_ops,
    version_of,
)

_TF_EXTRA = "tensorflow-cpu and tf2onnx"
_CHUNK = 1024 * 1024


def convert_savedmodel(job: dict, scratch: Path) -> dict:
    folder = _unpack(Path(job["source"]), scratch / "savedmodel")
    return _convert_folder(folder, job, {"format": "savedmodel"})


def convert_keras(job: dict, scratch: Path) -> dict:
    _tensorflow()
    keras = require("keras", "keras", "Keras conversion")
    try:
        model = keras.saving.load_model(job["source"], safe_mode=True, compile=False)
    except Exception as exc:  # safe mode raises ValueError; a broken file, various types
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        code = "keras_unsafe" if "safe_mode" in str(exc) or "Lambda" in str(exc) else "load_failed"
        raise ConversionFailed(code, f"Keras refused to load the file (safe mode): {message}") from exc
    folder = scratch / "keras-savedmodel"
    try:
        model.export(str(folder), format="tf_saved_model", verbose=False)
    except Exception as exc:
        raise ConversionFailed("export_failed", f"Keras could not export a SavedModel: {exc}") from exc
    result = _convert_folder(folder, {**job, "signature_name": "serving_default"}, {"format": "keras"})
    result["framework"]["keras"] = version_of("keras")
    return result


def _tensorflow() -> Any:
    require("tf2onnx", _TF_EXTRA, "TensorFlow conversion")
    tf = require("tensorflow", _TF_EXTRA, "TensorFlow conversion")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    return tf


def _unpack(archive: Path, target: Path) -> Path:
    """Unpack a zip or tar of a SavedModel folder; the folder holding saved_model.pb.
    The web process checked the member names and sizes; RLIMIT_FSIZE bounds what is written."""
    target.mkdir()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as source:
            # zipfile drops ".." and absolute parts, and reads no more than each member's declared
            # size, which the web process checked (formats.detect).
            source.extractall(target)  # noqa: S202
    else:
        with tarfile.open(archive) as source:
            source.extractall(target, filter="data")  # refuses links out, devices, absolute paths
    found = sorted(target.rglob("saved_model.pb"), key=lambda p: len(p.parts))
    if not found:
        raise ConversionFailed("savedmodel_missing", "The archive holds no saved_model.pb.")
    return found[0].parent


def _signature(imported: Any, chosen: str | None) -> tuple[str, Any]:
    names = sorted(name for name in imported.signatures if not name.startswith("_"))
    if chosen:
        if chosen not in names:
            raise ConversionFailed(
                "signature_not_found",
                f"The SavedModel has no signature '{chosen}'; it has: {', '.join(names)}.",
            )
        return chosen, imported.signatures[chosen]
    if not names:
        raise ConversionFailed(
            "signature_missing",
            "The SavedModel has no serving signature: save it with "
            "tf.saved_model.save(model, path, signatures=...).",
        )
    if len(names) > 1:
        raise ConversionFailed(
            "signature_ambiguous",
            f"The SavedModel has {len(names)} signatures ({', '.join(names)}); choose one with the "
            "upload's signature_name field.",
        )
    return names[0], imported.signatures[names[0]]


def _input_specs(function: Any, override: list[dict] | None) -> list[dict]:
    if override:
        return override
    _, kwargs = function.structured_input_signature
    return [
        {
            "name": name,
            "dtype": spec.dtype.name,
            "shape": [-1 if d is None else d for d in spec.shape.as_list()],
        }
        for name, spec in sorted(kwargs.items())
    ]


def _convert_folder(folder: Path, job: dict, converted_from: dict) -> dict:
    tf = _tensorflow()
    import tf2onnx

    try:
        imported = tf.saved_model.load(str(folder))
    except Exception as exc:
        raise ConversionFailed("load_failed", f"TensorFlow could not load the SavedModel: {exc}") from exc
    name, function = _signature(imported, job.get("signature_name"))
    specs = _input_specs(function, job.get("input_signature"))
    output = job["output"]
    graph_def, inputs, outputs, renames = tf2onnx.tf_loader.from_saved_model(
        str(folder), None, None, signatures=[name], return_tensors_to_rename=True
    )
    try:
        tf2onnx.convert.from_graph_def(
            graph_def,
            input_names=inputs,
            output_names=outputs,
            opset=job["opset"],
            tensors_to_rename=renames,
            output_path=output,
        )
    except Exception as exc:
        raise ConversionFailed("export_failed", f"tf2onnx could not convert the model: {exc}") from exc
    unknown = unknown_ops(output)
    if unknown:
        raise ConversionFailed(
            "unsupported_op",
            f"tf2onnx cannot convert the TensorFlow op(s) {', '.join(unknown)} to ONNX.",
        )
    parity = Parity(job["atol"])
    for label, feeds in check_inputs(specs_from(specs), job["seed"], job["random_checks"]):
        expected = function(**{key: tf.constant(value) for key, value in feeds.items()})
        names, actual = onnx_outputs(output, feeds)
        parity.compare(label, [expected[n].numpy() for n in names], actual, names)
    return {
        **converted_from,
        "signature_name": name,
        "inputs": specs,
        "framework": {"tensorflow": tf.__version__},
        "converter": {"tf2onnx": version_of("tf2onnx"), "opset": job["opset"]},
        "parity": parity.report(),
    }


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ chatter off in the child's log
