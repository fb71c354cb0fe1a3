"""One prediction pipeline behind every door: the synchronous predict, batch jobs, and the
protocol doors to come (docs/architecture.md). A door translates its wire format into
`Input`s, runs them, and renders the outcomes; no door repeats a step. In order:

1. resolve the target     apps/inference/targets.py (the door calls it: it holds the name)
2. read and check inputs  `Run.__init__` (digest, metadata) and `_read`
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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings

from apps.core import metrics
from apps.core.exceptions import ApplicationError, UnprocessableInput
from apps.core.text import client_text
from apps.inference import postprocessing, preprocessing, tensors
from apps.inference.inferring import infer
from apps.inference.sessions import loaded_model
from apps.registry.models import MLModel, ModelVersion

IMAGE, TENSORS = "image", "tensors"


@dataclass
class Input:
    """One input as a door read it: image bytes, or named tensors (parsed, or JSON bytes)."""

    kind: str = IMAGE
    data: bytes | None = None
    tensors: Any = None
    opener: Callable[[], bytes] | None = None  # read when the pipeline gets to it (a stored input)
    content_type: str = ""
    filename: str = ""
    digest: str = ""  # sha256 of the bytes, when the door knows it already
    size: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # the door's own audit metadata


@dataclass
class Outcome:
    """What became of one input: its audit description, its answer, or its error."""

    input: Input
    digest: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    array: np.ndarray | None = None
    feeds: dict[str, np.ndarray] | None = None
    output: dict[str, Any] = field(default_factory=dict)  # what the client gets (JSON)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # the model's outputs, for binary doors
    audit_output: dict[str, Any] = field(default_factory=dict)  # what the audit row keeps
    error: ApplicationError | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None

    def fail(self, error: ApplicationError) -> None:
        self.error, self.array, self.feeds = error, None, None
        self.output, self.audit_output, self.arrays = {}, {}, {}


class Run:
    """One pass of the pipeline over the inputs of a request or of a job's batch."""

    def __init__(self, version: ModelVersion, inputs: list[Input], *, source: str) -> None:
        self.version, self.source = version, source
        self.outcomes = [_describe(item) for item in inputs]
        self.timings_ms = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}

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
                    raise _inconsistent_sizes(position, outcome.array, self.outcomes[0].array)
                _check_fits(spec, outcome.array)
            except ApplicationError as exc:
                if strict:
                    if len(self.outcomes) > 1 or exc.code != "images_not_supported":
                        exc.details = {**exc.details, "index": position}
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
        loaded = loaded_model(self.version)
        started = time.perf_counter()
        if outcomes[0].feeds is not None:
            feeds, batched = outcomes[0].feeds, False
        else:
            feeds, batched = {self._image_input()["name"]: np.stack([o.array for o in outcomes])}, True
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
        _postprocess(self.version, outcomes, outputs, loaded.output_names[0], top_k=top_k, batched=batched)
        self._lap("postprocess", started)

    def _lap(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.timings_ms[stage] = round(self.timings_ms[stage] + (now - since) * 1000, 3)
        return now


# --- 2. read and check the inputs -------------------------------------------------------------------


def _describe(item: Input) -> Outcome:
    """The audit description of an input, before anything is done with it."""
    outcome = Outcome(input=item, digest=item.digest)
    if item.kind == IMAGE:
        if item.data is not None and not outcome.digest:
            outcome.digest = hashlib.sha256(item.data).hexdigest()
        size = item.size if item.size is not None else len(item.data or b"")
        # The client's strings, made safe to store and to show.
        outcome.meta = {"kind": IMAGE, "content_type": client_text(item.content_type, 100), "size": size}
        if item.filename:
            outcome.meta["filename"] = client_text(item.filename, 200)
    elif isinstance(item.tensors, dict):
        outcome.meta = {"kind": TENSORS, "names": _tensor_names(item.tensors)}
    elif item.data is not None or item.opener is not None:
        outcome.meta = {"kind": TENSORS}
    outcome.meta.update(item.meta)
    return outcome


def _tensor_names(value: dict[str, Any]) -> list[str]:
    return [client_text(str(name), 200) for name in sorted(value)[:100]]


def _read(outcome: Outcome) -> bytes:
    item = outcome.input
    if item.data is None and item.opener is not None:
        try:
            item.data = item.opener()
        except (OSError, ValueError) as exc:
            raise ApplicationError("The stored input could not be read.", code="input_missing") from exc
    return item.data or b""


def _prepare_image(version: ModelVersion, outcome: Outcome) -> np.ndarray:
    """Decode and preprocess one image as the version says."""
    data = _read(outcome)
    config = version.preprocessing
    try:
        decoded = preprocessing.decode_image(data, max_pixels=settings.MAX_IMAGE_PIXELS, preprocessing=config)
        outcome.meta.update(decoded.describe())  # as sent; and as decoded, when reduced
        array = preprocessing.image_to_array(decoded.image, config, max_pixels=settings.MAX_IMAGE_PIXELS)
    except ApplicationError:
        raise
    except Exception as exc:  # Pillow can raise almost anything on hostile files: the input's fault
        raise UnprocessableInput(
            f"The input could not be decoded: {type(exc).__name__}.", code="invalid_image"
        ) from exc
    return array


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
            value = json.loads(_read(outcome))
        except (ValueError, RecursionError) as exc:
            raise UnprocessableInput(f"The input could not be read: {exc}", code="invalid_tensor") from exc
        if isinstance(value, dict):
            outcome.meta["names"] = _tensor_names(value)
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
    first_output: str,
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
        rows = postprocessing.top_k(outputs[first_output], version.labels, top_k, apply_softmax=softmax)
        for outcome, row in zip(outcomes, rows, strict=True):
            outcome.output = outcome.audit_output = {"top_k": row}
        return
    for outcome in outcomes:
        mine = outcome.arrays
        outcome.output = {"outputs": {n: postprocessing.tensor_to_json(a) for n, a in mine.items()}}
        outcome.audit_output = {"outputs": {n: postprocessing.tensor_summary(a) for n, a in mine.items()}}
