"""The Open Inference Protocol's answers, whichever wire carries them (REST or gRPC):
server and model metadata, readiness, the repository index, and inference through the one
prediction pipeline (apps/inference/pipeline.py) with the platform's access rules, quota
and audit rows.

A request's version slot is a version number, or an alias name (`/versions/staging`); none
means the alias `production`. Tensors go to the model as named inputs; a single BYTES input
to a model that takes one image tensor carries encoded images (JPEG, PNG…), decoded and
preprocessed with the version's preprocessing config, one audit row each.
"""

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from django.conf import settings

from apps.accounts.credentials import Credential
from apps.accounts.models import User
from apps.core.exceptions import ApplicationError, InvalidInput, NotFound
from apps.core.views import readiness_checks
from apps.inference import pipeline, postprocessing
from apps.inference.services import Caller, record_refusal, run_strict
from apps.inference.targets import Target, check_servable, resolve_target
from apps.oip.datatypes import BYTES, oip_datatype
from apps.oip.protocol import (
    InferInput,
    InferRequest,
    InferResponse,
    OutputTensor,
    RequestedOutput,
    bad_request,
)
from apps.registry.models import MLModel, ModelVersion

EXTENSIONS = ["binary_tensor_data", "classification", "model_repository"]
PLATFORM = "onnxruntime_onnx"
_ALIAS = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")
_MAX_VERSION = 2**31 - 1


def server_metadata() -> dict[str, Any]:
    return {
        "name": "mlplatform",
        "version": settings.SPECTACULAR_SETTINGS["VERSION"],
        "extensions": EXTENSIONS,
    }


def server_ready() -> bool:
    """Ready to infer: the database answers, the model store is writable, preloaded models load."""
    return all(check["ok"] for check in readiness_checks(("database", "model_store", "models")).values())


def target(
    *, user: User, api_key: Credential | None, name: str, version: str, routing_key: str = ""
) -> Target:
    """The model and version a protocol request names, with the platform's answers: 404 for a
    model the caller cannot see (never saying it exists), 403 for a key limited to others."""
    if version.isascii() and version.isdigit():
        number = int(version)
        if not 1 <= number <= _MAX_VERSION:
            raise NotFound(f"Model '{name}' has no version {version}.", code="version_not_found")
        return resolve_target(
            user=user, api_key=api_key, name=name, version=number, alias=None, routing_key=routing_key
        )
    if version and not _ALIAS.match(version):
        raise InvalidInput("The version must be a number or an alias name.", code="invalid_version")
    return resolve_target(
        user=user, api_key=api_key, name=name, version=None, alias=version or None, routing_key=routing_key
    )


def model_metadata(*, user: User, api_key: Credential | None, name: str, version: str) -> dict[str, Any]:
    model, found, _, _ = target(user=user, api_key=api_key, name=name, version=version)
    versions = [str(v.number) for v in model.versions.order_by("number") if v.is_servable]
    return {
        "name": model.name,
        "versions": versions,
        "platform": PLATFORM,
        "inputs": _tensor_metadata(found.signature.get("inputs", [])),
        "outputs": _tensor_metadata(found.signature.get("outputs", [])),
    }


def _tensor_metadata(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"name": s["name"], "datatype": oip_datatype(s.get("dtype", "float")), "shape": s.get("shape", [])}
        for s in specs
    ]


def model_ready(*, user: User, api_key: Credential | None, name: str, version: str) -> bool:
    return target(user=user, api_key=api_key, name=name, version=version)[1].is_servable


def repository_index(
    *, user: User, api_key: Credential | None, ready_only: bool = False
) -> list[dict[str, Any]]:
    """Every version of every model the caller can see, with its state."""
    models = MLModel.objects.visible_to(user, api_key).prefetch_related("versions").order_by("name")
    index = []
    for model in models:
        for version in sorted(model.versions.all(), key=lambda v: v.number):
            state = "READY" if version.is_servable else "UNAVAILABLE"
            if ready_only and state != "READY":
                continue
            entry = {"name": model.name, "version": str(version.number), "state": state}
            if state != "READY":
                entry["reason"] = f"version is {version.status}"
            index.append(entry)
    return index


def model_infer(
    *, caller: Caller, name: str, version: str, request: InferRequest | Callable[[], InferRequest]
) -> InferResponse:
    """Run an inference request; its quota and one audit row per input (as /api/v1 counts:
    one per image, one per tensor request), failed rows for a refused request. `request` may
    be a function that reads it off the wire: once the version is known, a request that
    cannot be read is recorded as refused too."""
    model, found, alias, route = target(
        user=caller.user, api_key=caller.api_key, name=name, version=version, routing_key=caller.routing_key
    )
    inputs: list[pipeline.Input] | None = None
    try:
        check_servable(found)  # before the request is read against a signature it may not have yet
        if callable(request):
            request = request()
        inputs = pipeline_inputs(found, request)
        _check_outputs(found, request)
    except ApplicationError as error:
        record_refusal(caller=caller, version=found, alias=alias, route=route, error=error, inputs=inputs)
        raise
    k = max([o.classification for o in request.outputs] or [0]) or settings.PREDICT_DEFAULT_TOP_K
    run = run_strict(
        caller=caller, version=found, alias=alias, route=route, inputs=inputs, top_k=min(k, 1000)
    )
    arrays = _merged(run.outcomes)
    return InferResponse(
        model_name=model.name,
        model_version=str(found.number),
        id=request.id,
        outputs=_outputs(found, request, arrays),
    )


def pipeline_inputs(version: ModelVersion, request: InferRequest) -> list[pipeline.Input]:
    """The request's tensors as the pipeline's inputs: encoded images, or named tensors whose
    names and datatypes are exactly the model's (shapes and values the pipeline checks)."""
    specs = {s["name"]: s for s in version.signature.get("inputs", [])}
    given = request.inputs
    if not given:
        raise bad_request("The request has no inputs.")
    names = [i.name for i in given]
    if len(set(names)) != len(names):
        raise bad_request("An input is given twice.")
    if _encoded_images(specs, given):
        return [pipeline.Input(data=element) for element in given[0].elements or []] or _no_images()
    unknown, missing = sorted(set(names) - set(specs)), sorted(set(specs) - set(names))
    if unknown or missing:
        raise bad_request(
            f"The model takes inputs {sorted(specs)}; unknown: {unknown[:20]}, missing: {missing}.",
            expected=sorted(specs),
        )
    tensors = {}
    for item in given:
        expected = oip_datatype(specs[item.name].get("dtype", "float"))
        if item.datatype != expected or item.array is None:
            raise bad_request(
                f"Input '{item.name}' has datatype {item.datatype[:32]}; the model takes {expected}.",
                input=item.name,
                expected_datatype=expected,
            )
        tensors[item.name] = item.array
    return [pipeline.Input(kind=pipeline.TENSORS, tensors=tensors)]


def _encoded_images(specs: dict[str, dict], given: list[InferInput]) -> bool:
    if len(specs) != 1 or len(given) != 1 or given[0].datatype != BYTES:
        return False
    (spec,) = specs.values()
    return given[0].name == spec["name"] and oip_datatype(spec.get("dtype", "float")) != BYTES


def _no_images() -> list[pipeline.Input]:
    raise bad_request("The BYTES input holds no image.")


def _check_outputs(version: ModelVersion, request: InferRequest) -> None:
    known = {s["name"] for s in version.signature.get("outputs", [])}
    for output in request.outputs:
        if output.name not in known:
            raise bad_request(
                f"Unknown output '{output.name[:200]}'; the model's outputs are {sorted(known)}.",
                expected=sorted(known),
            )
        if not 0 <= output.classification <= 1000:
            raise bad_request("parameters.classification must be a count from 1 to 1000.")


def _merged(outcomes: list[pipeline.Outcome]) -> dict[str, np.ndarray]:
    """One tensor request's outputs, or the images' outputs stacked into one batch again."""
    if len(outcomes) == 1:
        return outcomes[0].arrays
    return {name: np.concatenate([o.arrays[name] for o in outcomes]) for name in outcomes[0].arrays}


def _outputs(
    version: ModelVersion, request: InferRequest, arrays: dict[str, np.ndarray]
) -> list[OutputTensor]:
    wanted: Sequence[RequestedOutput | None] = request.outputs or [None] * len(arrays)
    names = [o.name for o in request.outputs] or list(arrays)
    tensors = []
    for name, asked in zip(names, wanted, strict=True):
        array = arrays[name]
        binary = asked.binary if asked is not None else None
        if asked is not None and asked.classification:
            tensors.append(_classification(version, name, array, asked.classification, binary))
        else:
            tensors.append(
                OutputTensor(name, oip_datatype(array.dtype), list(array.shape), array=array, binary=binary)
            )
    return tensors


def _classification(
    version: ModelVersion, name: str, array: np.ndarray, k: int, binary: bool | None
) -> OutputTensor:
    """The classification extension: per batch row, the k best classes as "score:index:label"
    (scores after the version's softmax when it has one, as /api/v1 reports them)."""
    if array.ndim == 0 or array.dtype.kind not in "fiu":
        raise bad_request(f"Output '{name}' does not hold class scores.")
    batch = array.reshape(array.shape[0] if array.ndim > 1 else 1, -1)
    softmax = version.preprocessing.get("softmax", False)
    rows = postprocessing.top_k(batch, version.labels, k, apply_softmax=softmax)
    elements = [f"{c['score']}:{c['index']}:{c['label']}".encode() for row in rows for c in row]
    shape = [len(rows), len(rows[0]) if rows else 0]
    return OutputTensor(name, BYTES, shape, elements=elements, binary=binary)
