"""Synchronous predictions: resolve the version, spend quota, run the model, record every input."""

import base64
import binascii
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors
from rest_framework import exceptions as drf_exceptions

from apps.accounts.models import ApiKey, User
from apps.accounts.services import QuotaExceeded, quota_consume
from apps.core import metrics
from apps.core.exception_handler import describe_error
from apps.core.exceptions import (
    ApplicationError,
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    UnprocessableInput,
)
from apps.core.localcache import LocalTTLCache
from apps.core.text import client_text
from apps.inference import postprocessing, preprocessing, runtime, tensors
from apps.inference.audit import insert_predictions, insert_predictions_spending_quota
from apps.inference.models import Prediction
from apps.inference.sessions import loaded_model
from apps.registry import selectors as registry_selectors
from apps.registry.models import MLModel, ModelAlias, ModelVersion

logger = logging.getLogger(__name__)

LARGE_INPUT_HINT = "Large inputs belong in batch jobs."


# --- Requests ------------------------------------------------------------------------------------


@dataclass
class ImageInput:
    data: bytes
    content_type: str = ""
    filename: str = ""


@dataclass
class PredictionRequest:
    images: list[ImageInput] = field(default_factory=list)
    inputs: dict[str, Any] | None = None
    top_k: int = 5

    @property
    def count(self) -> int:
        return len(self.images) if self.images else 1


@dataclass
class Caller:
    user: User
    api_key: ApiKey | None
    request_id: str
    client_address: str


def decode_base64_image(value: Any, index: int) -> ImageInput:
    if not isinstance(value, str):
        raise InvalidInput(f"Image {index} must be a base64 string.", code="invalid_image")
    content_type = ""
    if value.startswith("data:"):  # a data URL: data:image/jpeg;base64,...
        header, _, value = value.partition(",")
        content_type = header[5:].split(";")[0]
    try:
        return ImageInput(data=base64.b64decode(value, validate=True), content_type=content_type)
    except (binascii.Error, ValueError) as exc:
        raise UnprocessableInput(f"Image {index} is not valid base64.", code="invalid_image") from exc


# (name, version, alias) → (model, version): the hot path of every prediction, kept per
# process for LOCAL_CACHE_SECONDS (cleared at once by registry changes in this process).
targets = LocalTTLCache(ttl=lambda: settings.LOCAL_CACHE_SECONDS)


def _lookup_target(name: str, version: int | None, alias: str) -> tuple[MLModel, ModelVersion] | None:
    if version is not None:
        found = ModelVersion.objects.select_related("model").filter(model__name=name, number=version).first()
        return (found.model, found) if found is not None else None
    pointers = ModelAlias.objects.select_related("model", "version")
    pointer = pointers.filter(model__name=name, name=alias).first()
    if pointer is None:
        return None
    pointer.version.model = pointer.model
    return pointer.model, pointer.version


def resolve_target(
    *, user: User, api_key: ApiKey | None, name: str, version: int | None, alias: str | None
) -> tuple[MLModel, ModelVersion, str]:
    """The model and version a prediction is for: version N, or the version under
    `alias` (default production). At most one query on the usual path (none when
    cached); visibility is checked on every request. The error paths tell an
    unknown or invisible model (404 model_not_found) from an unknown version or alias."""
    if version is not None and alias:
        raise InvalidInput("Give either version or alias, not both.", code="invalid_input")
    if api_key is not None and not api_key.allows_model(name):
        registry_selectors.model_get_visible(user=user, name=name, api_key=api_key)  # raises 403
    alias = "" if version is not None else (alias or "production")
    found = targets.get_or_set((name, version, alias), lambda: _lookup_target(name, version, alias))
    if found is not None and registry_selectors.model_is_visible(user=user, model=found[0]):
        return found[0], found[1], alias
    model = registry_selectors.model_get_visible(user=user, name=name)
    if version is not None:
        raise NotFound(f"Model '{model.name}' has no version {version}.", code="version_not_found")
    raise NotFound(f"Model '{model.name}' has no alias '{alias}'.", code="alias_not_found")


def predict(
    *, caller: Caller, model: MLModel, version: ModelVersion, alias: str, request: PredictionRequest
) -> dict:
    """Run one synchronous prediction request and record one audit row per input.

    The quota is spent together with the audit rows once the result is known, in
    one statement (one database round trip per prediction on PostgreSQL); a user
    over quota gets 429 and no result. Failures after the version is known are
    recorded as failed predictions, spend nothing, and propagate to the API.
    """
    started = time.perf_counter()
    recorder = _Recorder(caller=caller, version=version, alias=alias, request=request)
    try:
        check_servable(version)
        if request.images and len(request.images) > settings.SYNC_MAX_IMAGES:
            raise PayloadTooLarge(
                f"At most {settings.SYNC_MAX_IMAGES} images per request. {LARGE_INPUT_HINT}",
                details={"max_images": settings.SYNC_MAX_IMAGES},
            )
        response = _run(model=model, version=version, request=request, recorder=recorder)
        recorder.succeed(started)
    except Exception as exc:
        recorder.fail(exc, started)
        raise
    metrics.PREDICTIONS.labels(model.name, str(version.number), "sync", "succeeded").inc(request.count)
    metrics.BATCH_SIZE.labels("sync").observe(request.count)
    metrics.observe_stages(model.name, version.number, response["timings_ms"])
    response["timings_ms"]["total"] = round((time.perf_counter() - started) * 1000, 3)
    return {"model": model.name, "version": version.number, "alias": alias or None, **response}


def check_servable(version: ModelVersion) -> None:
    """409 version_not_ready unless the version may serve predictions."""
    if not version.is_servable:
        raise Conflict(
            f"Version {version.number} is {version.status}; only a ready version serves predictions.",
            code="version_not_ready",
            details={"version": version.number, "status": version.status},
        )


def record_refusal(
    *,
    caller: Caller,
    version: ModelVersion,
    alias: str,
    error: Exception,
    request: PredictionRequest | None = None,
) -> None:
    """Record a request refused before the model ran (a body over the limit, bad parameters…):
    one row per input when its inputs were read, else one row. A refused request with more
    images than a synchronous call takes leaves one row with their count, so that one request
    cannot write thousands of rows without spending quota."""
    request = request or PredictionRequest()
    images = request.images
    summarized = len(images) > settings.SYNC_MAX_IMAGES
    recorder = _Recorder(
        caller=caller, version=version, alias=alias, request=PredictionRequest() if summarized else request
    )
    if summarized:
        recorder.metas[0] = {"kind": "images", "count": len(images), "size": sum(len(i.data) for i in images)}
    recorder.fail(error, time.perf_counter())


def _run(*, model: MLModel, version: ModelVersion, request: PredictionRequest, recorder: "_Recorder") -> dict:
    t0 = time.perf_counter()
    if request.images:
        feeds = _image_feeds(version, request.images, recorder)
    else:
        if request.inputs is None:
            raise InvalidInput("Send an image, images, or named tensor inputs.", code="no_input")
        recorder.describe_tensors(request.inputs)
        feeds = tensors.parse_tensor_inputs(
            request.inputs,
            version.signature.get("inputs", []),
            non_finite=version.preprocessing.get("non_finite", "reject"),
        )
        recorder.tensor_digest(feeds)
    t1 = time.perf_counter()
    loaded = loaded_model(version)
    outputs = _infer(
        loaded, feeds, batched=bool(request.images), dynamic=version.signature.get("dynamic_batch")
    )
    t2 = time.perf_counter()
    if request.images and model.task == MLModel.Task.IMAGE_CLASSIFICATION:
        first = outputs[loaded.output_names[0]]
        rows = postprocessing.top_k(
            first, version.labels, request.top_k, apply_softmax=version.preprocessing.get("softmax", False)
        )
        predictions = [{"top_k": row} for row in rows]
        recorder.outputs = [{"top_k": row} for row in rows]
    else:
        predictions = [
            {"outputs": {name: postprocessing.tensor_to_json(arr) for name, arr in outputs.items()}}
        ]
        recorder.outputs = [{"outputs": {n: postprocessing.tensor_summary(a) for n, a in outputs.items()}}]
    t3 = time.perf_counter()
    return {
        "predictions": predictions,
        "timings_ms": {
            "preprocess": round((t1 - t0) * 1000, 3),
            "inference": round((t2 - t1) * 1000, 3),
            "postprocess": round((t3 - t2) * 1000, 3),
        },
    }


def _image_feeds(
    version: ModelVersion, images: list[ImageInput], recorder: "_Recorder"
) -> dict[str, np.ndarray]:
    inputs = version.signature.get("inputs", [])
    if len(inputs) != 1:
        raise UnprocessableInput(
            f"This model takes {len(inputs)} inputs; send them as named tensors, not images.",
            code="images_not_supported",
        )
    arrays = []
    for index, image in enumerate(images):
        recorder.describe_image(index, image)
        if len(image.data) > settings.SYNC_MAX_IMAGE_BYTES:
            raise PayloadTooLarge(
                f"Image {index} is {len(image.data)} bytes; the synchronous limit is "
                f"{settings.SYNC_MAX_IMAGE_BYTES}. {LARGE_INPUT_HINT}",
                details={"index": index, "limit_bytes": settings.SYNC_MAX_IMAGE_BYTES},
            )
        try:
            decoded = preprocessing.decode_image(image.data, max_pixels=settings.MAX_IMAGE_PIXELS)
        except ApplicationError as exc:
            exc.details = {**exc.details, "index": index}
            raise
        recorder.describe_decoded(index, decoded)
        try:
            array = preprocessing.image_to_array(
                decoded.image, version.preprocessing, max_pixels=settings.MAX_IMAGE_PIXELS
            )
        except ApplicationError as exc:
            exc.details = {**exc.details, "index": index}
            raise
        if not arrays:
            # The first image's shape against the model's, before any more are preprocessed:
            # a config that does not fit its model must not hold 32 full-size arrays first.
            _check_fits(inputs[0], array[None])
        elif array.shape != arrays[0].shape:
            raise UnprocessableInput(
                f"Image {index} preprocesses to shape {list(array.shape)}, image 0 to "
                f"{list(arrays[0].shape)}; the images of one request must come out the same size "
                "(this version does not resize them).",
                code="inconsistent_image_sizes",
                details={"index": index},
            )
        arrays.append(array)
    batch = np.stack(arrays)
    if version.signature.get("dynamic_batch"):  # a fixed batch of 1 gets one image per call
        _check_fits(inputs[0], batch)
    return {inputs[0]["name"]: batch}


def _check_fits(spec: dict[str, Any], batch: np.ndarray) -> None:
    try:
        tensors.check_shape(spec["name"], batch, spec["shape"])
    except UnprocessableInput as exc:
        exc.message = f"{exc.message} The version's preprocessing does not fit its model input."
        exc.code = "preprocessing_mismatch"
        raise


_ORT_RUN_ERRORS = tuple(
    getattr(ort_errors, name)
    for name in ("Fail", "InvalidArgument", "RuntimeException", "InvalidGraph", "NotImplemented")
    if hasattr(ort_errors, name)
)
_inference_slots: threading.BoundedSemaphore | None = None
_inference_slots_lock = threading.Lock()


def inference_slots() -> threading.BoundedSemaphore:
    """How many model calls may run at once in this process (INFERENCE_CONCURRENCY).

    With threaded web workers, two requests in one process would otherwise run
    ONNX Runtime side by side on the same cores, which is slower than one after
    the other (docs/decisions/0007-application-server.md). The other threads
    still decode, preprocess and talk to the database meanwhile: ONNX Runtime
    releases the GIL while it runs.
    """
    global _inference_slots
    if _inference_slots is None:
        with _inference_slots_lock:  # two first requests at once must share one semaphore
            if _inference_slots is None:
                _inference_slots = threading.BoundedSemaphore(settings.INFERENCE_CONCURRENCY)
    return _inference_slots


def _infer(
    loaded: runtime.LoadedModel, feeds: dict[str, np.ndarray], *, batched: bool, dynamic: bool
) -> dict:
    with inference_slots():
        return _infer_unlimited(loaded, feeds, batched=batched, dynamic=dynamic)


def _infer_unlimited(
    loaded: runtime.LoadedModel, feeds: dict[str, np.ndarray], *, batched: bool, dynamic: bool
) -> dict:
    try:
        if batched and not dynamic and next(iter(feeds.values())).shape[0] > 1:
            # A model with a fixed batch of 1: one call per image, outputs stacked.
            name, batch = next(iter(feeds.items()))
            runs = [loaded.run({name: batch[i : i + 1]}) for i in range(batch.shape[0])]
            return {key: np.concatenate([r[key] for r in runs]) for key in runs[0]}
        return loaded.run(feeds)
    except _ORT_RUN_ERRORS as exc:
        # The model could not compute on these inputs (e.g. tensors that do not broadcast):
        # the input's fault, not the server's. Loading errors happen earlier, in the cache.
        raise UnprocessableInput(f"The model refused the input: {exc}", code="inference_failed") from exc


# --- Audit ---------------------------------------------------------------------------------------


def _error_code_and_message(exc: Exception) -> tuple[str, str]:
    """The code and message an audit row keeps, as the error body shows them."""
    described = describe_error(exc)
    if described is None:
        return "internal_error", "An internal error occurred."
    code, message = described
    if isinstance(exc, drf_exceptions.ValidationError):  # the body names the fields in details
        message = f"{message} {json.dumps(exc.detail)}"
    return code, message


class _Recorder:
    """Collects what the audit rows need while a request runs, and writes them in one INSERT."""

    def __init__(
        self, *, caller: Caller, version: ModelVersion, alias: str, request: PredictionRequest
    ) -> None:
        self.caller, self.version, self.alias = caller, version, alias
        count = request.count
        self.digests = [""] * count
        self.metas: list[dict[str, Any]] = [{} for _ in range(count)]
        self.outputs: list[dict[str, Any]] = [{} for _ in range(count)]
        for index, image in enumerate(request.images):
            self.describe_image(index, image)

    def describe_image(self, index: int, image: ImageInput) -> None:
        if not self.digests[index]:
            self.digests[index] = hashlib.sha256(image.data).hexdigest()
            content_type = client_text(image.content_type, 100)  # a client's string, as the filename
            self.metas[index] = {"kind": "image", "content_type": content_type, "size": len(image.data)}
            if image.filename:
                self.metas[index]["filename"] = client_text(image.filename, 200)

    def describe_decoded(self, index: int, decoded: preprocessing.DecodedImage) -> None:
        self.metas[index].update(format=decoded.format, width=decoded.width, height=decoded.height)

    def describe_tensors(self, inputs: Any) -> None:
        names = sorted(inputs)[:100] if isinstance(inputs, dict) else []  # the client's names
        self.metas[0] = {"kind": "tensors", "names": [client_text(str(name), 200) for name in names]}

    def tensor_digest(self, feeds: dict[str, np.ndarray]) -> None:
        digest = hashlib.sha256()
        for name in sorted(feeds):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(feeds[name]).tobytes())
        self.digests[0] = digest.hexdigest()
        self.metas[0]["tensors"] = {
            n: {"shape": list(a.shape), "dtype": a.dtype.name} for n, a in feeds.items()
        }

    def succeed(self, started: float) -> None:
        """Spend the quota and write the rows; QuotaExceeded if the quota is spent."""
        rows = self._rows(Prediction.Status.SUCCEEDED, started)
        amount = len(rows)
        if connection.vendor == "postgresql" and insert_predictions_spending_quota(
            self.caller.user, amount, rows
        ):
            return
        with transaction.atomic():  # spend and record together, or neither
            quota_consume(user=self.caller.user, amount=amount)  # creates the month's row, or raises 429
            insert_predictions(rows)

    def fail(self, exc: Exception, started: float) -> None:
        code, message = _error_code_and_message(exc)
        if isinstance(exc, QuotaExceeded):
            message = "Monthly prediction quota spent."
        labels = (self.version.model.name, str(self.version.number), "sync", "failed")
        metrics.PREDICTIONS.labels(*labels).inc(len(self.digests))
        try:
            self._write(Prediction.Status.FAILED, started, error_code=code, error_message=message[:1000])
        except Exception:  # recording must never mask the original error
            logger.exception("Could not record failed prediction")

    def _write(self, status: str, started: float, *, error_code: str = "", error_message: str = "") -> None:
        insert_predictions(self._rows(status, started, error_code=error_code, error_message=error_message))

    def _rows(
        self, status: str, started: float, *, error_code: str = "", error_message: str = ""
    ) -> list[dict[str, Any]]:
        latency = round((time.perf_counter() - started) * 1000, 3)
        now = timezone.now()
        return [
            {
                "created_at": now,
                "user_id": self.caller.user.pk,
                "api_key_id": self.caller.api_key.pk if self.caller.api_key else None,
                "model_version_id": self.version.pk,
                "model_name": self.version.model.name,
                "version_number": self.version.number,
                "alias": self.alias,
                "source": Prediction.Source.SYNC,
                "input_sha256": digest,
                "input_meta": meta,
                "output": output if status == Prediction.Status.SUCCEEDED else {},
                "status": status,
                "error_code": error_code,
                "error_message": error_message,
                "latency_ms": latency,
                "request_id": self.caller.request_id,
                "client_address": self.caller.client_address,
            }
            for digest, meta, output in zip(self.digests, self.metas, self.outputs, strict=True)
        ]
