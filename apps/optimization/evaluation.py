"""Evaluation sets and the comparison report of a source model and its optimised result.

An evaluation set is a zip of images in one folder per label (`cat/1.jpg`, `dog/2.jpg`,
or the same under one top folder), or JSON Lines of `{"inputs": {...}, "label": "7"}` or
`{"image": "<base64>", "label": "cat"}`. A calibration set is an evaluation set used
without its labels. No ORM here: the worker passes paths, configs and loaded models.
"""

import base64
import binascii
import json
import math
import posixpath
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from apps.core.exceptions import InvalidInput, UnprocessableInput
from apps.inference import pipeline, tensors
from apps.inference.runtime import LoadedModel, RuntimeConfig, load_model

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


@dataclass
class EvalItem:
    label: str | None
    image: bytes | None = None
    inputs: dict[str, Any] | None = None
    name: str = ""


def read_items(path: Path, kind: str) -> Iterator[EvalItem]:
    """The items of a stored evaluation set, in order."""
    if kind == "images":
        from apps.jobs.inputs import archive_inputs

        with path.open("rb") as upload:
            for entry in archive_inputs(upload):
                folder = posixpath.dirname(entry.filename.replace("\\", "/"))
                if posixpath.splitext(entry.filename)[1].lower() not in IMAGE_SUFFIXES:
                    continue
                yield EvalItem(
                    label=posixpath.basename(folder) or None, image=entry.data, name=entry.filename
                )
        return
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:  # not JSON, or not UTF-8 (an image sent on its own, say)
                raise InvalidInput(
                    f"Line {number} is not JSON. An evaluation set is a zip or tar archive of "
                    "labelled images, or JSON lines.",
                    code="invalid_evaluation_set",
                ) from exc
            if not isinstance(record, dict) or ("inputs" in record) == ("image" in record):
                raise InvalidInput(
                    f"Line {number} needs exactly one of 'inputs' or 'image', and a 'label'.",
                    code="invalid_evaluation_set",
                )
            label = record.get("label")
            label = None if label is None else str(label)
            if "image" in record:
                try:
                    image = base64.b64decode(str(record["image"]), validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise InvalidInput(f"Line {number}: bad base64.", code="invalid_evaluation_set") from exc
                yield EvalItem(label=label, image=image, name=f"line {number}")
            else:
                yield EvalItem(label=label, inputs=record["inputs"], name=f"line {number}")


def summarize(path: Path, kind: str, labels: list[str]) -> dict[str, Any]:
    """Check a new evaluation set: readable, not empty, and every label one the model has."""
    counts: dict[str, int] = {}
    total = 0
    for item in read_items(path, kind):
        total += 1
        if item.label is not None:
            counts[item.label] = counts.get(item.label, 0) + 1
    if total == 0:
        raise InvalidInput("The evaluation set has no items.", code="empty_evaluation_set")
    # A model without labels (a plain tensor model) cannot be checked: its sets calibrate only.
    unknown = sorted(set(counts) - set(labels)) if labels else []
    if unknown:
        raise UnprocessableInput(
            f"The evaluation set has labels the model does not have: {', '.join(unknown[:20])}.",
            code="unknown_labels",
            details={"unknown_labels": unknown[:100], "model_labels_count": len(labels)},
        )
    return {"items": total, "labelled": sum(counts.values()), "labels": dict(sorted(counts.items()))}


def feeds(item: EvalItem, config: dict[str, Any], signature: dict[str, Any]) -> dict[str, np.ndarray]:
    specs = signature.get("inputs", [])
    if item.image is not None:
        array = pipeline.preprocess_image(item.image, config, {})  # exactly as serving does
        return {specs[0]["name"]: array[None]}
    return tensors.parse_tensor_inputs(item.inputs, specs, non_finite=config.get("non_finite", "reject"))


def scores(model: LoadedModel, outputs: dict[str, np.ndarray], classes: int) -> np.ndarray:
    """The [N, classes] output that ranks the classes: the first float output of rank 2
    (with `classes` columns when the model has labels)."""
    for name in model.output_names:
        array = outputs[name]
        if (
            array.ndim == 2
            and np.issubdtype(array.dtype, np.floating)
            and (not classes or array.shape[1] == classes)
        ):
            return array
    raise UnprocessableInput("The model has no [N, classes] score output to rank.", code="no_score_output")


def ranked(model: LoadedModel, inputs: dict[str, np.ndarray], classes: int) -> list[int]:
    """The model's five best classes for one item, best first."""
    row = scores(model, model.run(inputs), classes)[0]
    return np.argsort(row)[::-1][:5].tolist()


def wilson(successes: int, n: int, z: float = 1.96) -> list[float] | None:
    """The Wilson score interval of a proportion, in percent (95 % for z = 1.96). It stays
    inside 0..100 and is honest near 100 %, where the normal approximation collapses."""
    if not n:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(100 * max(0.0, centre - half), 2), round(100 * min(1.0, centre + half), 2)]


@dataclass
class Comparison:
    items: int = 0
    labelled: int = 0
    source_top1: int = 0
    source_top5: int = 0
    result_top1: int = 0
    result_top5: int = 0
    agree_top1: int = 0

    def add(self, source: list[int], result: list[int], truth: int | None) -> None:
        """Count one item: both models' five best classes and its label's index (or None)."""
        self.items += 1
        self.agree_top1 += source[0] == result[0]
        if truth is not None:
            self.labelled += 1
            self.source_top1 += source[0] == truth
            self.source_top5 += truth in source
            self.result_top1 += result[0] == truth
            self.result_top5 += truth in result

    def report(self) -> dict[str, Any]:
        def pct(n: int, d: int) -> float | None:
            return round(100 * n / d, 2) if d else None

        # The gate decides on the point estimates; the intervals say how much a set of this
        # size can tell (they treat items as independent, which views of one photo are not).
        return {
            "items": self.items,
            "labelled": self.labelled,
            "source": {
                "top1": pct(self.source_top1, self.labelled),
                "top5": pct(self.source_top5, self.labelled),
                "top1_interval95": wilson(self.source_top1, self.labelled),
            },
            "result": {
                "top1": pct(self.result_top1, self.labelled),
                "top5": pct(self.result_top5, self.labelled),
                "top1_interval95": wilson(self.result_top1, self.labelled),
            },
            "top1_agreement": pct(self.agree_top1, self.items),
            "top1_agreement_interval95": wilson(self.agree_top1, self.items),
        }


def gate_verdict(accuracy: dict[str, Any], limit: float) -> dict[str, Any]:
    """The accuracy gate on a comparison report: a top-1 drop of more than `limit` points
    fails. Without labelled accuracy it passes, unevaluated. The one rule every recipe and
    the auto-int8 search apply."""
    before = (accuracy.get("source") or {}).get("top1")
    after = (accuracy.get("result") or {}).get("top1")
    gate: dict[str, Any] = {"max_top1_drop": limit}
    if before is None or after is None:
        gate.update(evaluated=False, passed=True, reason="No labelled evaluation set: accuracy not measured.")
        return gate
    drop = round(before - after, 2)
    gate.update(evaluated=True, top1_drop=drop, passed=drop <= limit)
    interval = (accuracy.get("result") or {}).get("top1_interval95")
    shown = f" (95% interval {interval[0]}-{interval[1]}%)" if interval else ""
    gate["reason"] = (
        f"Top-1 accuracy {after}%{shown} against {before}% for the source: a drop of {drop} points"
        f" ({'within' if drop <= limit else 'beyond'} the allowed {limit})."
    )
    return gate


def compare(
    source: LoadedModel,
    result: LoadedModel,
    items: Iterator[EvalItem],
    *,
    config: dict[str, Any],
    signature: dict[str, Any],
    labels: list[str],
) -> Comparison:
    """Top-1/top-5 accuracy of both models and their top-1 agreement, item by item."""
    found = Comparison()
    index_of = {label: i for i, label in enumerate(labels)}
    for item in items:
        inputs = feeds(item, config, signature)
        truth = index_of.get(item.label) if item.label is not None else None
        found.add(ranked(source, inputs, len(labels)), ranked(result, inputs, len(labels)), truth)
    return found


@dataclass
class PreparedSet:
    """An evaluation set preprocessed once and the source's answers to it, for comparing
    many candidates (the auto-int8 search) without decoding the images again."""

    inputs: list[dict[str, np.ndarray]]
    truths: list[int | None]
    source_ranked: list[list[int]]
    source_outputs: list[np.ndarray]
    classes: int

    def compare(self, result: LoadedModel) -> Comparison:
        found = Comparison()
        for inputs, truth, source in zip(self.inputs, self.truths, self.source_ranked, strict=True):
            found.add(source, ranked(result, inputs, self.classes), truth)
        return found


def prepare(
    source: LoadedModel,
    items: Iterator[EvalItem],
    *,
    config: dict[str, Any],
    signature: dict[str, Any],
    labels: list[str],
) -> PreparedSet:
    index_of = {label: i for i, label in enumerate(labels)}
    prepared = PreparedSet([], [], [], [], len(labels))
    for item in items:
        inputs = feeds(item, config, signature)
        prepared.inputs.append(inputs)
        prepared.truths.append(index_of.get(item.label) if item.label is not None else None)
        row = scores(source, source.run(inputs), len(labels))
        prepared.source_outputs.append(row)
        prepared.source_ranked.append(np.argsort(row[0])[::-1][:5].tolist())
    return prepared


def performance(
    paths: dict[str, Path],
    sample: dict[str, np.ndarray],
    *,
    config: RuntimeConfig,
    runs: int = 30,
    batch: int = 8,
) -> dict[str, dict[str, float]]:
    """File size, load time, latency p50/p95 at batch 1 and throughput at `batch`, for each
    model, measured in this process with the runs interleaved, so both see the same machine."""
    loaded, result = {}, {}
    for name, path in paths.items():
        started = time.perf_counter()
        loaded[name] = load_model((0, name), path, config)
        result[name] = {
            "size_bytes": path.stat().st_size,
            "load_ms": round((time.perf_counter() - started) * 1000, 1),
        }
    latencies: dict[str, list[float]] = {name: [] for name in paths}
    batched = {k: np.repeat(v, batch, axis=0) for k, v in sample.items()}
    seconds: dict[str, float] = dict.fromkeys(paths, 0.0)
    for _ in range(runs):
        for name, model in loaded.items():
            started = time.perf_counter()
            model.run(sample)
            latencies[name].append((time.perf_counter() - started) * 1000)
    for _ in range(max(runs // 5, 3)):
        for name, model in loaded.items():
            started = time.perf_counter()
            model.run(batched)
            seconds[name] += time.perf_counter() - started
    for name in paths:
        ordered = sorted(latencies[name])
        result[name].update(
            latency_p50_ms=round(statistics.median(ordered), 3),
            latency_p95_ms=round(ordered[max(int(len(ordered) * 0.95) - 1, 0)], 3),
            throughput_batch=batch,
            throughput_items_per_s=round(batch * max(runs // 5, 3) / seconds[name], 1),
        )
    return result


def calibration_feeds(
    items: Iterator[EvalItem], *, config: dict[str, Any], signature: dict[str, Any], limit: int
) -> Iterator[dict[str, np.ndarray]]:
    for count, item in enumerate(items):
        if count >= limit:
            return
        yield feeds(item, config, signature)
