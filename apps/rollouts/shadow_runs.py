"""Shadow traffic, the worker side (ADR 0018): run a stored batch of mirrored requests through
the shadow version with the one pipeline (leniently: a bad input fails its own row), write
one audit row per input with source and route 'shadow', linked to the primary's row by the
request id and the input's index, and delete the stored inputs.

Idempotent: the rows of a request already written are skipped, and the partial unique index
one_shadow_row_per_input makes a racing second delivery write nothing; the stored file is
deleted once its rows are in, and the retention sweep deletes what a lost message left.
"""

import contextlib
import datetime
import logging
import time
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.inference import audit
from apps.inference.inputs import IMAGE, TENSORS, Input, Outcome
from apps.inference.models import Prediction
from apps.inference.pipeline import Run
from apps.registry.models import ModelVersion
from apps.registry.storage import model_store
from apps.rollouts import metrics, pairing
from apps.rollouts.models import SHADOW, Rollout
from apps.rollouts.shadowing import STORAGE_FOLDER, dropped, load

logger = logging.getLogger(__name__)


def shadow_run(message: dict[str, Any]) -> int:
    """Run one enqueued batch (apps/rollouts/shadowing.send's message); the rows written.
    A rollout that has ended, or whose shadow stopped or changed, drops the batch (counted)."""
    rollout = Rollout.objects.select_related("model", "shadow__model").filter(pk=message["rollout"]).first()
    requests, name = message["requests"], message["input_name"]
    try:
        if rollout is None:
            return 0
        shadow = rollout.shadow
        if not rollout.is_shadowing or shadow is None or shadow.pk != message["version"]:
            dropped(rollout.pk, shadow or rollout.primary, _input_count(requests), "ended")
            return 0
        done = set(
            Prediction.objects.filter(source=SHADOW, request_id__in=[r["request_id"] for r in requests])
            .values_list("request_id", flat=True)
            .distinct()
        )
        todo = [r for r in requests if r["request_id"] not in done]
        return _run(rollout, shadow, todo, name) if todo else 0
    finally:
        with contextlib.suppress(OSError):
            model_store.delete(name)


def _run(rollout: Rollout, shadow: ModelVersion, requests: list[dict[str, Any]], name: str) -> int:
    try:
        with model_store.open(name, "rb") as stored:
            inputs = _inputs(requests, load(stored.read()))
    except (OSError, ValueError, KeyError):
        logger.warning("Shadow inputs %s could not be read; the batch is dropped", name, exc_info=True)
        dropped(rollout.pk, shadow, _input_count(requests), "ended")
        return 0
    started = time.perf_counter()
    run = Run(shadow, inputs, source=Prediction.Source.SHADOW)
    outcomes = run.execute(top_k=max(r["top_k"] for r in requests), strict=False)
    seconds = (time.perf_counter() - started) / max(1, len(outcomes))
    written, position = 0, 0
    for request in requests:
        mine = outcomes[position : position + len(request["inputs"])]
        position += len(mine)
        written += _write(rollout, shadow, request["request_id"], mine, seconds)
    _count(shadow, outcomes, seconds)
    pairing.observe_pairs(rollout, shadow, [r["request_id"] for r in requests])
    return written


def _inputs(requests: list[dict[str, Any]], parts: dict[str, Any]) -> list[Input]:
    inputs = []
    for i, request in enumerate(requests):
        for j, given in enumerate(request["inputs"]):
            if given["kind"] == IMAGE:
                inputs.append(Input(data=parts[f"{i}.{j}"], content_type=given.get("content_type", "")))
                continue
            prefix = f"{i}.{j}."
            tensors = {key[len(prefix) :]: part for key, part in parts.items() if key.startswith(prefix)}
            inputs.append(Input(kind=TENSORS, tensors=tensors))
    return inputs


def _write(
    rollout: Rollout, shadow: ModelVersion, request_id: str, outcomes: list[Outcome], seconds: float
) -> int:
    """The request's rows, all or none. The model's owner owns them: no caller, no key, no
    quota (the caller's trail never shows them)."""
    context = audit.Context(
        user_id=rollout.model.owner_id,
        api_key_id=None,
        version=shadow,
        alias=rollout.alias_name,
        source=Prediction.Source.SHADOW,
        request_id=request_id,
        client_address="",
        route=SHADOW,
    )
    rows = audit.rows(context, outcomes, started=time.perf_counter())
    for index, row in enumerate(rows):
        row["input_index"], row["latency_ms"] = index, round(seconds * 1000, 3)
    try:
        with transaction.atomic():
            audit.insert_predictions(rows)
    except IntegrityError:  # a second delivery of the same batch wrote them first
        return 0
    return len(rows)


def _count(version: ModelVersion, outcomes: list[Outcome], seconds: float) -> None:
    failed = sum(1 for o in outcomes if not o.succeeded)
    for status, count in (("succeeded", len(outcomes) - failed), ("failed", failed)):
        if count:
            metrics.observe(version.model.name, version.number, SHADOW, status, count, seconds)


def _input_count(requests: list[dict[str, Any]]) -> int:
    return sum(len(r["inputs"]) for r in requests)


def shadow_inputs_sweep(now: datetime.datetime | None = None) -> int:
    """Delete stored shadow inputs older than SHADOW_INPUT_RETENTION_HOURS (a lost message's
    orphans; a delivered batch deletes its own). The age is read from the name, so this lists
    one folder and reads no file. Periodic (Celery beat)."""
    cutoff = (now or timezone.now()) - datetime.timedelta(hours=settings.SHADOW_INPUT_RETENTION_HOURS)
    try:
        _, files = model_store.listdir(STORAGE_FOLDER)
    except (OSError, NotImplementedError):
        return 0
    deleted = 0
    for filename in files:
        try:
            stamp = datetime.datetime.strptime(filename[:14], "%Y%m%d%H%M%S").replace(tzinfo=datetime.UTC)
        except ValueError:
            continue
        if stamp < cutoff:
            with contextlib.suppress(OSError):
                model_store.delete(f"{STORAGE_FOLDER}/{filename}")
                deleted += 1
    return deleted
