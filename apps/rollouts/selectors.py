"""Reads of rollouts, and each version's statistics in a rollout, from the audit rows.

A version's statistics read its latest audit rows of the rollout's alias and route, at most
ROLLOUT_STATS_MAX_ROWS of them: the index prediction_model_recent (model name, version
number, -id) gives them in order, from the rollout's first prediction id onward, so the
query is bounded however long the rollout runs.
"""

import datetime
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, QuerySet

from apps.core.exceptions import NotFound
from apps.inference.models import Prediction
from apps.registry.models import MLModel
from apps.rollouts.models import CANARY, PRIMARY, SHADOW, Rollout


@dataclass
class VersionStats:
    version: int
    route: str
    requests: int = 0
    failed: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    top1: dict[str, int] = field(default_factory=dict)
    mean_top1_score: float | None = None
    sampled: bool = False  # True when the window held more rows than were read

    @property
    def error_rate(self) -> float:
        return self.failed / self.requests if self.requests else 0.0


def rollout_list(*, model: MLModel) -> QuerySet[Rollout]:
    return model.rollouts.select_related(
        "primary", "promoted_to", "shadow", "created_by", "ended_by"
    ).prefetch_related("candidates__version")


def rollout_get(*, model: MLModel, rollout_id: int) -> Rollout:
    rollout = rollout_list(model=model).filter(pk=rollout_id).first()
    if rollout is None:
        raise NotFound(f"Model '{model.name}' has no rollout {rollout_id}.", code="rollout_not_found")
    return rollout


def _rows(rollout: Rollout, number: int, route: str) -> QuerySet[Prediction]:
    rows = Prediction.objects.filter(
        model_name=rollout.model.name,
        version_number=number,
        id__gt=rollout.first_prediction_id,
        alias=rollout.alias_name,
        route=route,
        created_at__gte=rollout.created_at,
    )
    return rows.filter(created_at__lte=rollout.ended_at) if rollout.ended_at else rows


def request_counts(rollout: Rollout) -> dict[str, int]:
    """Requests answered per version in the rollout (one aggregate query)."""
    rows = Prediction.objects.filter(
        Q(version_number=rollout.primary.number, route=PRIMARY) | Q(route=CANARY),
        model_name=rollout.model.name,
        id__gt=rollout.first_prediction_id,
        alias=rollout.alias_name,
        created_at__gte=rollout.created_at,
    )
    if rollout.ended_at:
        rows = rows.filter(created_at__lte=rollout.ended_at)
    counted = rows.values("version_number").annotate(n=Count("id"))
    return {str(row["version_number"]): row["n"] for row in counted}


def version_stats(
    rollout: Rollout,
    number: int,
    *,
    route: str,
    since: datetime.datetime | None = None,
    until: datetime.datetime | None = None,
    outputs: bool = False,
) -> VersionStats:
    """Requests, failures, latency p50/p95 and (with `outputs`) the top-1 classes and mean
    top-1 score of version `number` answering as `route`, over the latest rows of the window."""
    rows = _rows(rollout, number, route)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    limit = settings.ROLLOUT_STATS_MAX_ROWS
    columns = ("status", "latency_ms", "output") if outputs else ("status", "latency_ms")
    read = list(rows.order_by("-id").values_list(*columns)[: limit + 1])
    stats = VersionStats(version=number, route=route, sampled=len(read) > limit)
    read = read[:limit]
    stats.requests = len(read)
    stats.failed = sum(1 for row in read if row[0] == Prediction.Status.FAILED)
    latencies = sorted(row[1] for row in read if row[1] is not None)
    stats.latency_p50_ms, stats.latency_p95_ms = _percentile(latencies, 50), _percentile(latencies, 95)
    if outputs:
        _add_top1(stats, [row[2] for row in read if row[0] == Prediction.Status.SUCCEEDED])
    return stats


def _percentile(ordered: list[float], p: int) -> float | None:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    if not ordered:
        return None
    return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 3)


def _add_top1(stats: VersionStats, outputs: list[Any]) -> None:
    """Classifier rows only (a tensor model's outputs have no top class)."""
    firsts = [o["top_k"][0] for o in outputs if isinstance(o, dict) and o.get("top_k")]
    stats.top1 = dict(Counter(str(first.get("label")) for first in firsts).most_common())
    scores = [first["score"] for first in firsts if isinstance(first.get("score"), int | float)]
    stats.mean_top1_score = round(sum(scores) / len(scores), 6) if scores else None


def comparison(
    rollout: Rollout, *, since: datetime.datetime | None, until: datetime.datetime | None
) -> list[VersionStats]:
    """The primary's statistics, each candidate's and the shadow's, over one window."""
    versions = [(rollout.primary.number, PRIMARY)]
    versions += [(c.version.number, CANARY) for c in rollout.candidates.all()]
    if rollout.shadow is not None:
        versions.append((rollout.shadow.number, SHADOW))
    return [
        version_stats(rollout, number, route=route, since=since, until=until, outputs=True)
        for number, route in versions
    ]
