"""Model outputs → response JSON. No ORM imports."""

from typing import Any

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis. A NaN logit counts as -Inf (probability 0); a row with +Inf
    logits shares probability 1 among them; a row with nothing finite or +Inf is NaN."""
    x = np.where(np.isnan(logits), -np.inf, logits)
    infinite = np.isposinf(x)
    with np.errstate(invalid="ignore"):
        shifted = x - np.max(x, axis=-1, keepdims=True)
        exp = np.exp(shifted)
        probabilities = exp / np.sum(exp, axis=-1, keepdims=True)
    rows = infinite.any(axis=-1)
    if rows.any():
        probabilities[rows] = infinite[rows] / infinite[rows].sum(axis=-1, keepdims=True)
    return probabilities


def top_k(
    scores: np.ndarray, labels: list[str], k: int, *, apply_softmax: bool
) -> list[list[dict[str, Any]]]:
    """Per row of a [batch, classes] array: the k best classes, best first, with labels.

    Equal scores keep the classes' order. A model may emit NaN or ±Inf (an overflow on some
    input): NaN ranks last, and such scores come out as JSON can hold them (null, "Infinity",
    "-Infinity"), as in tensor_to_json.
    """
    scores = scores.reshape(scores.shape[0], -1).astype(np.float64)
    probabilities = softmax(scores) if apply_softmax else scores
    k = min(k, probabilities.shape[1])
    return [
        [
            {
                "index": int(i),
                "label": labels[i] if i < len(labels) else str(int(i)),
                "score": json_safe(round(float(row[i]), 6)),
            }
            for i in _best(row, k)
        ]
        for row in probabilities
    ]


def _best(row: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest values, highest first; ties by index; NaN after everything."""
    nan = np.isnan(row)
    rank = np.where(nan, -np.inf, row)
    candidates = np.arange(row.shape[0])
    if k < row.shape[0]:  # a partition first: only the k-th value's equals and betters are sorted
        kth = np.partition(rank, row.shape[0] - k)[row.shape[0] - k]
        candidates = np.flatnonzero(rank >= kth)
    order = np.lexsort((candidates, -rank[candidates], nan[candidates]))
    return candidates[order][:k]


def tensor_to_json(array: np.ndarray) -> dict[str, Any]:
    """A named output as shape, dtype and data; NaN and ±Inf become null / strings, valid JSON."""
    data: Any = array.tolist()
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        data = json_safe(data)
    return {"shape": list(array.shape), "dtype": array.dtype.name, "data": data}


def json_safe(value: Any) -> Any:
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, float):
        if value != value:
            return None
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
    return value


def tensor_summary(array: np.ndarray) -> dict[str, Any]:
    """What the audit row keeps of an output tensor: its form and a few statistics, not the data."""
    summary: dict[str, Any] = {"shape": list(array.shape), "dtype": array.dtype.name}
    if array.size and np.issubdtype(array.dtype, np.number):
        finite = array[np.isfinite(array)] if np.issubdtype(array.dtype, np.floating) else array
        if finite.size:
            # The mean in float64: float32 values near their limit would overflow to Inf
            # (a row PostgreSQL refuses); a float64 output still can, so all pass json_safe.
            mean = round(float(np.mean(finite, dtype=np.float64)), 6)
            stats = {"min": float(np.min(finite)), "max": float(np.max(finite)), "mean": mean}
            summary.update(json_safe(stats))
        if array.size <= 16:
            summary["data"] = json_safe(array.tolist())
    return summary
