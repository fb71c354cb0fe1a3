"""The shadow against the primary on the same inputs: each shadow row is paired with the
primary's row of the same request id and input index (the primary's rows of a request are
written in input order, so the index is the row's rank by id within its request).

Per pair of classifier answers: whether the top-1 classes agree, and the absolute difference
between the primary's top-1 score and the score the shadow gave that class (0 when the class
is outside the shadow's top k, so a lower bound on the shadow's score). Tensor models' rows
pair but are not comparable (their audit rows keep a summary, not the classes).
"""

import datetime
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps.inference.models import Prediction
from apps.registry.models import ModelVersion
from apps.rollouts import metrics
from apps.rollouts.models import PRIMARY, SHADOW, Rollout

CHUNK = 1000  # request ids per IN (...) list


@dataclass
class PairStats:
    shadow_rows: int = 0  # shadow rows read in the window (the latest ROLLOUT_STATS_MAX_ROWS)
    pairs: int = 0  # of them, those whose primary row was found
    comparable: int = 0  # pairs where both answered with classes
    agreeing: int = 0
    score_diff_sum: float = 0.0

    @property
    def agreement(self) -> float | None:
        return round(self.agreeing / self.comparable, 6) if self.comparable else None

    @property
    def disagreement(self) -> float | None:
        return None if self.agreement is None else round(1 - self.agreement, 6)

    @property
    def mean_abs_score_diff(self) -> float | None:
        return round(self.score_diff_sum / self.comparable, 6) if self.comparable else None


def paired_stats(
    rollout: Rollout, *, since: datetime.datetime | None = None, until: datetime.datetime | None = None
) -> PairStats:
    """Agreement and score difference over the window's latest shadow rows."""
    rows = Prediction.objects.filter(
        source=Prediction.Source.SHADOW,
        model_name=rollout.model.name,
        alias=rollout.alias_name,
        id__gt=rollout.first_prediction_id,
        created_at__gte=since or rollout.created_at,
    )
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    limit = settings.ROLLOUT_STATS_MAX_ROWS
    shadows = list(rows.order_by("-id").values_list("request_id", "input_index", "status", "output")[:limit])
    stats = PairStats(shadow_rows=len(shadows))
    primaries = primary_rows(rollout, {r[0] for r in shadows})
    for request_id, index, status, output in shadows:
        primary = primaries.get((request_id, index))
        if primary is None:
            continue
        stats.pairs += 1
        compared = compare(primary, output if status == Prediction.Status.SUCCEEDED else None)
        if compared is not None:
            stats.comparable += 1
            stats.agreeing += compared[0]
            stats.score_diff_sum += compared[1]
    return stats


def primary_rows(
    rollout: Rollout, request_ids: set[str]
) -> dict[tuple[str, int | None], dict[str, Any] | None]:
    """(request id, input index) → the primary's output (None when that input failed). The
    key's index is optional as the column is; a shadow row always has one."""
    found: dict[tuple[str, int | None], dict[str, Any] | None] = {}
    ids = sorted(request_ids)
    for start in range(0, len(ids), CHUNK):
        rows = (
            Prediction.objects.filter(
                request_id__in=ids[start : start + CHUNK],
                model_name=rollout.model.name,
                alias=rollout.alias_name,
                route=PRIMARY,
                id__gt=rollout.first_prediction_id,
            )
            .order_by("id")
            .values_list("request_id", "status", "output")
        )
        ranks: dict[str, int] = defaultdict(int)
        for request_id, status, output in rows:
            found[(request_id, ranks[request_id])] = output if status == Prediction.Status.SUCCEEDED else None
            ranks[request_id] += 1
    return found


def compare(primary: dict[str, Any] | None, shadow: dict[str, Any] | None) -> tuple[bool, float] | None:
    """(top-1 classes agree, |primary's top-1 score - shadow's score for that class|), or None
    when either side has no classes to compare."""
    mine, theirs = _top_k(primary), _top_k(shadow)
    if not mine or not theirs:
        return None
    first = mine[0]
    scores = {entry.get("label"): entry.get("score", 0.0) for entry in theirs}
    diff = abs(float(first.get("score", 0.0)) - float(scores.get(first.get("label"), 0.0)))
    return theirs[0].get("label") == first.get("label"), diff


def _top_k(output: dict[str, Any] | None) -> list[dict[str, Any]]:
    top = output.get("top_k") if isinstance(output, dict) else None
    return top if isinstance(top, list) else []


def observe_pairs(rollout: Rollout, version: ModelVersion, request_ids: list[str]) -> None:
    """Prometheus: count the pairs just written (the worker, after a batch of `version`, the
    shadow)."""
    shadows = Prediction.objects.filter(
        source=Prediction.Source.SHADOW, request_id__in=request_ids, route=SHADOW
    ).values_list("request_id", "input_index", "status", "output")
    primaries = primary_rows(rollout, set(request_ids))
    for request_id, index, status, output in shadows:
        compared = compare(
            primaries.get((request_id, index)), output if status == Prediction.Status.SUCCEEDED else None
        )
        if compared is not None:
            agree = "true" if compared[0] else "false"
            metrics.SHADOW_PAIRS.labels(version.model.name, str(version.number), agree).inc()
