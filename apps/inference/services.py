"""Synchronous requests onto the pipeline, for every door: run strictly, spend quota with
the audit rows, record every refusal. `predict` is the /api/v1 door's."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from apps.accounts.credentials import Credential
from apps.accounts.models import User
from apps.core import metrics
from apps.core.exceptions import InvalidInput, PayloadTooLarge
from apps.inference import audit, inputs, pipeline
from apps.inference.models import Prediction
from apps.inference.targets import check_servable, resolve_target
from apps.registry.models import MLModel, ModelVersion
from apps.rollouts import metrics as rollout_metrics
from apps.rollouts import shadowing

__all__ = ["check_servable", "resolve_target"]  # the door's whole vocabulary, in one import

logger = logging.getLogger(__name__)

LARGE_INPUT_HINT = "Large inputs belong in batch jobs."


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

    def pipeline_inputs(self) -> list[pipeline.Input]:
        if self.images:
            return [
                pipeline.Input(data=i.data, content_type=i.content_type, filename=i.filename)
                for i in self.images
            ]
        return [pipeline.Input(kind=pipeline.TENSORS, tensors=self.inputs)]


@dataclass
class Caller:
    """Who asks, and through which door (the audit row's `source`)."""

    user: User
    api_key: Credential | None  # an API key or an OAuth token: the audit row records which
    request_id: str
    client_address: str
    source: str = Prediction.Source.SYNC
    routing_key: str = ""  # as the client sent it (X-Routing-Key, x-routing-key): rollouts

    def audit_context(self, version: ModelVersion, alias: str, route: str = "") -> audit.Context:
        return audit.Context.of(
            user=self.user,
            api_key=self.api_key,
            version=version,
            alias=alias,
            source=self.source,
            request_id=self.request_id,
            client_address=self.client_address,
            route=route,
        )


def decode_base64_image(value: Any, index: int) -> ImageInput:
    data, content_type = inputs.decode_base64_image(value, index)
    return ImageInput(data=data, content_type=content_type)


def predict(
    *,
    caller: Caller,
    model: MLModel,
    version: ModelVersion,
    alias: str,
    request: PredictionRequest,
    route: str = "",
) -> dict:
    """Run one synchronous /api/v1 prediction request; its answer as the API shows it."""
    started = time.perf_counter()
    run = run_strict(
        caller=caller,
        version=version,
        alias=alias,
        route=route,
        inputs=request.pipeline_inputs(),
        top_k=request.top_k,
        check=lambda: _check_sync_limits(request),
    )
    timings = {**run.timings_ms, "total": round((time.perf_counter() - started) * 1000, 3)}
    return {
        "model": model.name,
        "version": version.number,
        "alias": alias or None,
        "route": route or None,
        "predictions": [outcome.output for outcome in run.outcomes],
        "timings_ms": timings,
    }


def run_strict(
    *,
    caller: Caller,
    version: ModelVersion,
    alias: str,
    inputs: list[pipeline.Input],
    top_k: int = 5,
    check: Callable[[], None] | None = None,
    route: str = "",
) -> pipeline.Run:
    """Any door's synchronous request: the pipeline run strictly, one audit row per input.

    The quota is spent together with the audit rows once the result is known, in
    one statement (one database round trip per prediction on PostgreSQL); a user
    over quota gets 429 and no result. Failures after the version is known, `check`'s
    included, are recorded as failed predictions, spend nothing, and propagate.
    """
    started = time.perf_counter()
    run = pipeline.Run(version, inputs, source=caller.source)
    context = caller.audit_context(version, alias, route)
    try:
        check_servable(version)
        if check is not None:
            check()
        run.execute(top_k=top_k, strict=True)
        audit.sink.write(audit.rows(context, run.outcomes, started=started), spend_quota_of=caller.user)
    except Exception as exc:
        _record_failure(context, run.outcomes, exc, started)
        raise
    labels = (version.model.name, str(version.number), caller.source, "succeeded")
    metrics.PREDICTIONS.labels(*labels).inc(len(run.outcomes))
    metrics.observe_stages(version.model.name, version.number, run.timings_ms)
    if route:  # an alias under a rollout: its metrics by role, and a sample for its shadow
        seconds = time.perf_counter() - started
        rollout_metrics.observe(
            version.model.name, version.number, route, "succeeded", len(run.outcomes), seconds
        )
        shadowing.mirror(
            request_id=caller.request_id,
            version=version,
            alias=alias,
            route=route,
            outcomes=run.outcomes,
            top_k=top_k,
        )
    return run


def _check_sync_limits(request: PredictionRequest) -> None:
    if request.images and len(request.images) > settings.SYNC_MAX_IMAGES:
        raise PayloadTooLarge(
            f"At most {settings.SYNC_MAX_IMAGES} images per request. {LARGE_INPUT_HINT}",
            details={"max_images": settings.SYNC_MAX_IMAGES},
        )
    for index, image in enumerate(request.images):
        if len(image.data) > settings.SYNC_MAX_IMAGE_BYTES:
            raise PayloadTooLarge(
                f"Image {index} is {len(image.data)} bytes; the synchronous limit is "
                f"{settings.SYNC_MAX_IMAGE_BYTES}. {LARGE_INPUT_HINT}",
                details={"index": index, "limit_bytes": settings.SYNC_MAX_IMAGE_BYTES},
            )
    if not request.images and request.inputs is None:
        raise InvalidInput("Send an image, images, or named tensor inputs.", code="no_input")


def record_refusal(
    *,
    caller: Caller,
    version: ModelVersion,
    alias: str,
    error: Exception,
    request: PredictionRequest | None = None,
    inputs: list[pipeline.Input] | None = None,
    route: str = "",
) -> None:
    """Record a request refused before the model ran (a body over the limit, bad parameters…):
    one row per input when its inputs were read (`request` or `inputs`), else one row. A
    refused request with more inputs than a synchronous call takes leaves one row with their
    count, so that one request cannot write thousands of rows without spending quota."""
    inputs = inputs if inputs is not None else (request or PredictionRequest()).pipeline_inputs()
    if len(inputs) > settings.SYNC_MAX_IMAGES:
        outcomes = [pipeline.Outcome(input=pipeline.Input())]
        size = sum(len(i.data or b"") for i in inputs)
        outcomes[0].meta = {"kind": "images", "count": len(inputs), "size": size}
    else:
        outcomes = pipeline.Run(version, inputs, source=caller.source).outcomes
    _record_failure(caller.audit_context(version, alias, route), outcomes, error, time.perf_counter())


def _record_failure(
    context: audit.Context, outcomes: list[pipeline.Outcome], error: Exception, started: float
) -> None:
    labels = (context.version.model.name, str(context.version.number), context.source, "failed")
    metrics.PREDICTIONS.labels(*labels).inc(len(outcomes))
    if context.route:
        seconds = time.perf_counter() - started
        rollout_metrics.observe(
            labels[0], context.version.number, context.route, "failed", len(outcomes), seconds
        )
    try:
        audit.sink.write(audit.rows(context, outcomes, started=started, error=error))
    except Exception:  # recording must never mask the original error
        logger.exception("Could not record failed prediction")
