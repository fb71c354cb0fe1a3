"""auto-int8 on a worker: the glue between a run and the search (apps/optimization/search.py).

The search itself has no ORM; here it gets the run's evaluation set, preprocessed once,
its calibration inputs per method, and its time box, and its record is kept on the run.
"""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.inference.runtime import RuntimeConfig, load_model
from apps.optimization import evaluation, search
from apps.optimization.models import OptimizationRun
from apps.registry.models import ModelVersion
from apps.registry.storage import local_path

Calibration = Callable[[], Iterator[dict[str, Any]]]


def calibrations(run: OptimizationRun, source: ModelVersion) -> Callable[[str], Calibration] | None:
    """The calibration inputs for a method, a fresh pass over the set each time the tools ask.
    auto-int8 calibrates on its evaluation set when no calibration set is named."""
    calibration_set = run.calibration_set
    if calibration_set is None and run.recipe == "auto-int8":
        calibration_set = run.evaluation_set
    if calibration_set is None:
        return None
    size = int(run.params.get("calibration_size", settings.OPTIMIZATION_CALIBRATION_SIZE))

    def for_method(method: str) -> Calibration:
        # Entropy and Percentile keep every input's activations in memory: fewer inputs.
        limit = size if method == "minmax" else min(size, settings.OPTIMIZATION_HISTOGRAM_CALIBRATION_MAX)
        return lambda: evaluation.calibration_feeds(
            evaluation.read_items(local_path(calibration_set.file.name), calibration_set.kind),
            config=source.preprocessing,
            signature=source.signature,
            limit=limit,
        )

    return for_method


def produce(
    run: OptimizationRun,
    source: ModelVersion,
    source_path: Path,
    target: Path,
    calibrations: Callable[[str], Calibration] | None,
    *,
    limit: float,
) -> None:
    """The accuracy-aware search (apps/optimization/search.py), gated on the run's
    evaluation set by the same rule as the final gate. Its record is kept on the run's
    report, whether it found a candidate or not."""
    assert run.evaluation_set is not None and calibrations is not None  # checked at request
    config = RuntimeConfig(intra_op_threads=settings.ORT_INTRA_OP_THREADS)
    items = run.evaluation_set
    prepared = evaluation.prepare(
        load_model((0, "source"), source_path, config),
        evaluation.read_items(local_path(items.file.name), items.kind),
        config=source.preprocessing,
        signature=source.signature,
        labels=source.labels,
    )
    budget = float(run.params.get("time_budget_seconds", settings.OPTIMIZATION_AUTO_INT8_SECONDS))
    found: dict[str, Any] = {}
    try:
        found = search.auto_int8(
            source_path,
            target,
            prepared=prepared,
            calibration=calibrations,
            limit=limit,
            budget_seconds=budget,
            config=config,
        )
    except search.NoPassingCandidate as exc:
        found = exc.report
        raise
    finally:
        run.report = {"search": found} if found else {}
        OptimizationRun.objects.filter(pk=run.pk).update(report=run.report)
