"""An optimization's report: the result measured against its source (size, latency and,
with a set, accuracy), written onto the result version by the gate."""

from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.inference.runtime import RuntimeConfig, load_model
from apps.optimization import evaluation
from apps.optimization.models import OptimizationRun
from apps.registry.models import ModelVersion
from apps.registry.storage import local_path


def optimization_report(
    run: OptimizationRun, source: ModelVersion, result: ModelVersion, source_path: Path, result_path: Path
) -> dict[str, Any]:
    config = RuntimeConfig(intra_op_threads=settings.ORT_INTRA_OP_THREADS)
    items_set = run.evaluation_set or run.calibration_set
    sample = None
    if items_set is not None:
        first = next(evaluation.read_items(local_path(items_set.file.name), items_set.kind), None)
        sample = evaluation.feeds(first, source.preprocessing, source.signature) if first else None
    if sample is None:
        sample = _zeros(source.signature)
    report: dict[str, Any] = {
        "recipe": run.recipe,
        "params": run.params,
        "source_version": source.number,
        "result_version": result.number,
        "measured_at": timezone.now().isoformat(),
        "performance": evaluation.performance(
            {"source": source_path, "result": result_path},
            sample,
            config=config,
            runs=settings.OPTIMIZATION_LATENCY_RUNS,
        ),
    }
    perf = report["performance"]
    report["size_ratio"] = round(perf["result"]["size_bytes"] / perf["source"]["size_bytes"], 4)
    report["latency_ratio_p50"] = round(
        perf["result"]["latency_p50_ms"] / perf["source"]["latency_p50_ms"], 3
    )
    if items_set is not None:
        models = [
            load_model((0, name), path, config) for name, path in (("s", source_path), ("r", result_path))
        ]
        comparison = evaluation.compare(
            models[0],
            models[1],
            evaluation.read_items(local_path(items_set.file.name), items_set.kind),
            config=source.preprocessing,
            signature=source.signature,
            labels=source.labels,
        )
        report["accuracy"] = {"set": items_set.name, **comparison.report()}
        if run.evaluation_set is None:  # a calibration set measures agreement only, not accuracy
            report["accuracy"]["source"] = report["accuracy"]["result"] = {"top1": None, "top5": None}
    return report


def _zeros(signature: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    dtypes = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32}
    feeds = {}
    for spec in signature.get("inputs", []):
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec["shape"]]
        feeds[spec["name"]] = np.zeros(shape, dtype=dtypes.get(spec.get("dtype", "float32"), np.float32))
    return feeds
