"""One prediction pipeline behind every door: the synchronous predict, batch jobs and the
Open Inference Protocol's REST and gRPC doors (docs/architecture.md). A door translates its
wire format into `Input`s, runs them, and renders the outcomes; no door repeats a step:

1. resolve the target     apps/inference/targets.py (the door calls it: it holds the name)
2. read and check inputs  apps/inference/inputs.py: `describe` (digest, metadata), `read`
3. preprocess             `_prepare_image` (decode + the version's preprocessing), `_prepare_tensors`
4. infer                  `_infer`: batched, under the inference slots (apps/inference/inferring.py)
5. postprocess            `_postprocess`: top-k per image, or output tensors per input
6. audit rows             apps/inference/audit.py: one row per input, written by one sink

A strict run (a synchronous request) stops at its first bad input and raises that error:
the request fails as a whole. A lenient run (a job's batch) fails that input alone and
goes on; images of different sizes then make one model call per size.
"""

import hashlib
import json
import time
from typing import Any

import numpy as np
from django.conf import settings

from apps.core import metrics
from apps.core.exceptions import ApplicationError, UnprocessableInput
from apps.inference import postprocessing, preprocessing, tensors
from apps.inference.inferring import infer
from apps.inference.inputs import IMAGE, TENSORS, Input, Outcome, describe, read, tensor_names
from apps.inference.sessions import loaded_model
from apps.registry.models import MLModel, ModelVersion
from apps.registry.validation import class_scores_output

# A door needs only this module: its inputs and outcomes come with it.
__all__ = ["IMAGE", "TENSORS", "Input", "Outcome", "Run", "preprocess_image"]


class Run:
    """One pass of the pipeline over the inputs of a request or of a job's batch."""

    def __init__(self, version: ModelVersion, inputs: list[Input], *, source: str) -> None:
        self.version, self.source = version, source
        self.outcomes = [describe(item) for item in inputs]
        self.timings_ms = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
        self.model_calls = 0

    def execute(self, *, top_k: int, strict: bool) -> list[Outcome]:
        started = time.perf_counter()
        if self.outcomes and self.outcomes[0].input.kind == IMAGE:
            groups = self._preprocess_images(strict)
        else:
            groups = self._preprocess_tensors(strict)
        self._lap("preprocess", started)
        for positions in groups:
            self._infer(positions, top_k=top_k, strict=strict)
        return self.outcomes

    # --- 3. preprocess -------------------------------------------------------------------------

    def _preprocess_images(self, strict: bool) -> list[list[int]]:
        """The images' arrays, grouped by shape: one model call per group."""
        spec = self._image_input()
        groups: dict[tuple, list[int]] = {}
        for position, outcome in enumerate(self.outcomes):
            try:
                if spec is None:
                    raise _images_not_supported(self.version)
                outcome.array = _prepare_image(self.version, outcome)
                if strict and groups and outcome.array.shape not in groups:
                    first = self.outcomes[0].array
                    assert first is not None  # the first image made the first group
                    raise _inconsistent_sizes(position, outcome.array, first)
                _check_fits(spec, outcome.array)
            except ApplicationError as exc:
                if strict:
                    if exc.code not in ("images_not_supported", "preprocessing_mismatch"):
                        exc.details = {**exc.details, "index": position}  # the image at fault
                    raise
                outcome.fail(exc)
                continue
            groups.setdefault(outcome.array.shape, []).append(position)
        return list(groups.values())

    def _image_input(self) -> dict[str, Any] | None:
        inputs = self.version.signature.get("inputs", [])
        return inputs[0] if len(inputs) == 1 else None

    def _preprocess_tensors(self, strict: bool) -> list[list[int]]:
        """Each tensor input is parsed and checked against the signature; one call each."""
        groups = []
        for position, outcome in enumerate(self.outcomes):
            try:
                _prepare_tensors(self.version, outcome)
            except ApplicationError as exc:
                if strict:
                    raise
                outcome.fail(exc)
                continue
            groups.append([position])
        return groups

    # --- 4. infer, 5. postprocess ----------------------------------------------------------------

    def _infer(self, positions: list[int], *, top_k: int, strict: bool) -> None:
        outcomes = [self.outcomes[p] for p in positions]
        started = time.perf_counter()  # a first load of the model counts as inference
        loaded = loaded_model(self.version)
        self.model_calls += 1
        if outcomes[0].feeds is not None:
            feeds, batched = outcomes[0].feeds, False
        else:
            spec, arrays = self._image_input(), [o.array for o in outcomes if o.array is not None]
            assert spec is not None and len(arrays) == len(outcomes)  # preprocessed images only reach here
            feeds, batched = {spec["name"]: np.stack(arrays)}, True
        metrics.BATCH_SIZE.labels(self.source).observe(len(outcomes))
        try:
            dynamic = bool(self.version.signature.get("dynamic_batch"))
            outputs = infer(loaded, feeds, batched=batched, dynamic=dynamic)
        except UnprocessableInput as exc:
            if strict:
                raise
            for outcome in outcomes:
                outcome.fail(exc)
            return
        finally:
            started = self._lap("inference", started)
        _postprocess(self.version, outcomes, outputs, top_k=top_k, batched=batched)
        self._lap("postprocess", started)

    def _lap(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.timings_ms[stage] = round(self.timings_ms[stage] + (now - since) * 1000, 3)
        return now


# --- 3. preprocess ------------------------------------------------------------------------------------


def _prepare_image(version: ModelVersion, outcome: Outcome) -> np.ndarray:
    return preprocess_image(read(outcome), version.preprocessing, outcome.meta)


def preprocess_image(data: bytes, config: dict[str, Any], meta: dict[str, Any]) -> np.ndarray:
    """Decode and preprocess one image as `config` says (any caller that needs exactly what
    serving does, such as an accuracy evaluation); `meta` gets what the audit row records."""
    try:
        decoded = preprocessing.decode_image(data, max_pixels=settings.MAX_IMAGE_PIXELS, preprocessing=config)
        meta.update(decoded.describe())  # as sent; and as decoded, when reduced
        return preprocessing.image_to_array(decoded.image, config, max_pixels=settings.MAX_IMAGE_PIXELS)
    except ApplicationError:
        raise
    except Exception as exc:  # Pillow can raise almost anything on hostile files: the input's fault
        raise UnprocessableInput(
            f"The input could not be decoded: {type(exc).__name__}.", code="invalid_image"
        ) from exc


def _check_fits(spec: dict[str, Any], array: np.ndarray) -> None:
    """A preprocessed image must fit the model's input: else the version's config is wrong."""
    try:
        tensors.check_shape(spec["name"], array[None], spec["shape"])
    except UnprocessableInput as exc:
        exc.message = f"{exc.message} The version's preprocessing does not fit its model input."
        exc.code = "preprocessing_mismatch"
        raise


def _prepare_tensors(version: ModelVersion, outcome: Outcome) -> None:
    item = outcome.input
    value = item.tensors
    if value is None:
        try:
            value = json.loads(read(outcome))
        except (ValueError, RecursionError) as exc:
            raise UnprocessableInput(f"The input could not be read: {exc}", code="invalid_tensor") from exc
        if isinstance(value, dict):
            outcome.meta["names"] = tensor_names(value)
    outcome.feeds = tensors.parse_tensor_inputs(
        value,
        version.signature.get("inputs", []),
        non_finite=version.preprocessing.get("non_finite", "reject"),
    )
    digest = hashlib.sha256()  # of the tensors as the model gets them, whichever way they were sent
    for name in sorted(outcome.feeds):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(outcome.feeds[name]).tobytes())
    outcome.digest = digest.hexdigest()
    outcome.meta["tensors"] = {
        n: {"shape": list(a.shape), "dtype": a.dtype.name} for n, a in outcome.feeds.items()
    }


def _images_not_supported(version: ModelVersion) -> UnprocessableInput:
    count = len(version.signature.get("inputs", []))
    return UnprocessableInput(
        f"This model takes {count} inputs; send them as named tensors, not images.",
        code="images_not_supported",
    )


def _inconsistent_sizes(position: int, array: np.ndarray, first: np.ndarray) -> UnprocessableInput:
    return UnprocessableInput(
        f"Image {position} preprocesses to shape {list(array.shape)}, image 0 to {list(first.shape)}; "
        "the images of one request must come out the same size (this version does not resize them).",
        code="inconsistent_image_sizes",
    )


# --- 5. postprocess ----------------------------------------------------------------------------------


def _postprocess(
    version: ModelVersion,
    outcomes: list[Outcome],
    outputs: dict[str, np.ndarray],
    *,
    top_k: int,
    batched: bool,
) -> None:
    """A classifier's images get their top k classes; anything else its output tensors, one
    slice of the batch per image."""
    for i, outcome in enumerate(outcomes):
        outcome.arrays = {n: a[i : i + 1] for n, a in outputs.items()} if batched else outputs
    if batched and version.model.task == MLModel.Task.IMAGE_CLASSIFICATION:
        softmax = version.preprocessing.get("softmax", False)
        # the output whose classes validation counted the labels against (a converted
        # classifier's int64 `label` may come first)
        scores = outputs[class_scores_output(version.signature)["name"]]
        rows = postprocessing.top_k(scores, version.labels, top_k, apply_softmax=softmax)
        for outcome, row in zip(outcomes, rows, strict=True):
            outcome.output = outcome.audit_output = {"top_k": row}
        return
    for outcome in outcomes:
        mine = outcome.arrays
        outcome.output = {"outputs": {n: postprocessing.tensor_to_json(a) for n, a in mine.items()}}
        outcome.audit_output = {"outputs": {n: postprocessing.tensor_summary(a) for n, a in mine.items()}}
