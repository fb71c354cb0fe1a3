"""Running an optimization on a worker: the recipe applied, the result registered as the
model's next version, validated, measured (`reports`) and gated on accuracy."""

import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File

from apps.core.exceptions import UnprocessableInput
from apps.optimization import auto_int8, evaluation, recipes
from apps.optimization.models import OptimizationRun
from apps.optimization.services.reports import optimization_report
from apps.registry import services as registry
from apps.registry.models import ModelVersion
from apps.registry.storage import local_path


def _step(run: OptimizationRun, step: str, progress: int) -> None:
    run.step, run.progress = step, progress
    OptimizationRun.objects.filter(pk=run.pk).update(step=step, progress=progress)


def optimization_execute(run: OptimizationRun) -> None:
    source = run.source_version
    source_path = local_path(source.artifact.name)
    version = run.result_version
    if version is None:
        version = _produce(run, source, source_path)
    # else: an earlier attempt registered the result and died before gating it: gate it now.
    if version.status in (ModelVersion.Status.PENDING, ModelVersion.Status.VALIDATING):
        validated = registry.model_version_validate(version_id=version.pk)
        if validated is None:  # deleted meanwhile
            raise UnprocessableInput(
                "The optimized model was deleted during its validation.", code="result_invalid"
            )
        version = validated
    if version.status != ModelVersion.Status.READY and version.failure_code != "not_evaluated":
        raise UnprocessableInput(
            f"The optimized model failed validation: {version.status_reason}", code="result_invalid"
        )
    # Until its gate has passed, the result may not take an alias.
    ModelVersion.objects.filter(pk=version.pk).update(
        status=ModelVersion.Status.FAILED,
        failure_code="not_evaluated",
        status_reason="Its optimization run has not gated it yet.",
    )
    _step(run, "evaluating", 60)
    searched = run.report.get("search")  # auto-int8's record, kept by _produce (or an earlier attempt)
    run.report = optimization_report(run, source, version, source_path, local_path(version.artifact.name))
    if searched:
        run.report["search"] = searched
    _step(run, "gating", 90)
    _gate(run, version)


def _produce(run: OptimizationRun, source: ModelVersion, source_path: Path) -> ModelVersion:
    """Apply the recipe and register the result as the model's next version (pending)."""
    params = run.params
    with tempfile.TemporaryDirectory(prefix="mlp-optimize-") as work:
        target = Path(work) / "model.onnx"
        _step(run, "optimizing", 10)
        calibrations = auto_int8.calibrations(run, source)
        if run.recipe == "auto-int8":
            auto_int8.produce(run, source, source_path, target, calibrations, limit=_gate_limit(run))
        else:
            method = params.get("calibration_method", "minmax")
            recipes.apply(
                run.recipe,
                source_path,
                target,
                calibration=calibrations(method) if calibrations else None,
                method=method,
                per_channel=params.get("per_channel"),
            )
        _step(run, "validating", 40)
        with target.open("rb") as produced:
            version = registry.model_version_create(
                model=source.model,
                file=File(produced, name="model.onnx"),
                created_by=run.created_by,
                labels=source.labels,
                preprocessing=source.preprocessing,
                notes=f"{run.recipe} of version {source.number}",
                enqueue_validation=False,
            )
    ModelVersion.objects.filter(pk=version.pk).update(derived_from=source)
    run.result_version = version
    OptimizationRun.objects.filter(pk=run.pk).update(result_version=version)
    return version


def _gate_limit(run: OptimizationRun) -> float:
    return float(run.params.get("max_top1_drop", settings.OPTIMIZATION_MAX_TOP1_DROP))


def _gate(run: OptimizationRun, version: ModelVersion) -> None:
    """Keep the result; mark it failed when its top-1 accuracy dropped too far."""
    gate = evaluation.gate_verdict(run.report.get("accuracy", {}), _gate_limit(run))
    run.report["gate"] = gate
    changes: dict[str, Any] = {"optimization": run.report}
    if gate["passed"]:
        changes.update(status=ModelVersion.Status.READY, failure_code="", status_reason="")
    else:
        changes.update(
            status=ModelVersion.Status.FAILED, failure_code="accuracy_gate", status_reason=gate["reason"]
        )
    ModelVersion.objects.filter(pk=version.pk).update(**changes)
