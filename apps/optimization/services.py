"""Evaluation sets, and optimization runs: request (web), run (worker), reconcile (beat).

A run applies a recipe to a ready version on a worker and registers the result as a new
version of the same model (`derived_from` the source, the recipe and report on
`optimization`). The result is validated like any upload, then compared with the source
in the same process, and gated on accuracy: a top-1 drop beyond `max_top1_drop`
percentage points keeps the version but marks it `failed` (failure_code
`accuracy_gate`), and only an admin can point an alias at it (with `force`).
"""

import datetime as dt
import hashlib
import logging
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.accounts.models import User
from apps.core import tasks
from apps.core.claims import ClaimRule, Lease
from apps.core.exceptions import ApplicationError, Conflict, InvalidInput, PayloadTooLarge, UnprocessableInput
from apps.core.heartbeat import Heartbeat
from apps.inference.runtime import RuntimeConfig, load_model
from apps.optimization import auto_int8, evaluation, recipes
from apps.optimization.models import EvaluationSet, OptimizationRun
from apps.registry import services as registry
from apps.registry.models import MLModel, ModelVersion
from apps.registry.storage import local_path

logger = logging.getLogger(__name__)

# Runs are leased as batch jobs are (JOB_LEASE_SECONDS, renewed every JOB_HEARTBEAT_SECONDS).
OPTIMIZATION_CLAIM = ClaimRule(
    model=OptimizationRun,
    queued=OptimizationRun.Status.QUEUED,
    running=OptimizationRun.Status.RUNNING,
    max_attempts_setting="OPTIMIZATION_MAX_ATTEMPTS",
    lease_seconds_setting="JOB_LEASE_SECONDS",
)


# --- Evaluation sets ---------------------------------------------------------------------------------


def _labels_of(model: MLModel) -> list[str]:
    latest = (
        model.versions.filter(status=ModelVersion.Status.READY).exclude(labels=[]).order_by("-number").first()
    )
    return latest.labels if latest is not None else []


def evaluation_set_create(
    *, model: MLModel, name: str, upload: Any, description: str = "", user: User | None
) -> EvaluationSet:
    """Store and check an evaluation set: readable, not empty, labels the model has."""
    if EvaluationSet.objects.filter(model=model, name=name).exists():
        raise Conflict(f"Model '{model.name}' already has an evaluation set '{name}'.", code="duplicate_name")
    size = upload.size or 0
    if size > settings.EVALUATION_SET_MAX_BYTES:
        raise PayloadTooLarge(
            f"An evaluation set may be at most {settings.EVALUATION_SET_MAX_BYTES} bytes.",
            details={"limit_bytes": settings.EVALUATION_SET_MAX_BYTES},
        )
    head = upload.read(8)
    upload.seek(0)
    is_archive = head.startswith(b"PK") or tarfile.is_tarfile(upload)
    upload.seek(0)
    kind = EvaluationSet.Kind.IMAGES if is_archive else EvaluationSet.Kind.JSONL
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    evaluation_set = EvaluationSet(
        model=model,
        name=name,
        kind=kind,
        sha256=digest.hexdigest(),
        size_bytes=size,
        description=description,
        created_by=user,
    )
    evaluation_set.file.save("set", upload, save=False)
    try:
        evaluation_set.summary = evaluation.summarize(
            local_path(evaluation_set.file.name), kind, _labels_of(model)
        )
        evaluation_set.save()
    except BaseException:
        evaluation_set.file.delete(save=False)
        raise
    return evaluation_set


def evaluation_set_delete(*, evaluation_set: EvaluationSet) -> None:
    name = evaluation_set.file.name
    evaluation_set.delete()
    if name is not None:  # every set has its file (the field's type allows None)
        evaluation_set.file.storage.delete(name)


# --- Requesting a run -------------------------------------------------------------------------------


def optimization_request(
    *,
    version: ModelVersion,
    recipe: str,
    user: User | None,
    evaluation_set: EvaluationSet | None = None,
    calibration_set: EvaluationSet | None = None,
    params: dict[str, Any] | None = None,
) -> OptimizationRun:
    """Check the request and queue a run (202); the worker does the rest."""
    if recipe not in recipes.RECIPES:
        raise InvalidInput(
            f"No recipe '{recipe}'; the recipes are {', '.join(recipes.RECIPES)}.",
            code="unknown_recipe",
            details={"recipes": list(recipes.RECIPES)},
        )
    if version.status != ModelVersion.Status.READY:
        raise Conflict(
            f"Version {version.number} is {version.status}; only a ready version can be optimized.",
            code="version_not_ready",
            details={"version": version.number, "status": version.status},
        )
    if recipe == "static-int8" and calibration_set is None:
        raise InvalidInput(
            "static-int8 calibrates on a calibration set: name one (an evaluation set of this model).",
            code="calibration_set_required",
        )
    if recipe == "auto-int8" and evaluation_set is None:
        raise InvalidInput(
            "auto-int8 searches for a model that passes the accuracy gate: name an evaluation set"
            " (it also calibrates, unless a calibration set is named).",
            code="evaluation_set_required",
        )
    for chosen in (evaluation_set, calibration_set):
        if chosen is not None:
            unknown = sorted(set(chosen.summary.get("labels", {})) - set(version.labels))
            if unknown and chosen is evaluation_set:
                raise UnprocessableInput(
                    f"Evaluation set '{chosen.name}' has labels version {version.number} does not have: "
                    f"{', '.join(unknown[:20])}.",
                    code="unknown_labels",
                    details={"unknown_labels": unknown[:100]},
                )
    run = OptimizationRun.objects.create(
        model=version.model,
        source_version=version,
        recipe=recipe,
        params=params or {},
        evaluation_set=evaluation_set,
        calibration_set=calibration_set,
        created_by=user,
    )
    transaction.on_commit(lambda: enqueue_run(run.pk))
    return run


def enqueue_run(run_id: uuid.UUID) -> None:
    """Ring the doorbell; a broker that is down costs a delay (the reconciler enqueues the
    run again), never a run."""
    try:
        tasks.enqueue(
            tasks.OPTIMIZE_VERSION, str(run_id), retry=True, retry_policy=settings.JOB_ENQUEUE_RETRY_POLICY
        )
    except Exception:
        logger.warning("Could not enqueue optimization %s; the reconciler will", run_id, exc_info=True)


# --- Running (on a worker) ----------------------------------------------------------------------------


def _heartbeat(lease: Lease) -> Heartbeat:
    """Renews the running optimization's lease while its worker works; ends when another
    worker has taken the run over."""
    return Heartbeat(
        lambda: OPTIMIZATION_CLAIM.renew(lease),
        interval=settings.JOB_HEARTBEAT_SECONDS,
        name=f"optimization {lease.pk}",
    )


def _step(run: OptimizationRun, step: str, progress: int) -> None:
    run.step, run.progress = step, progress
    OptimizationRun.objects.filter(pk=run.pk).update(step=step, progress=progress)


def optimization_run(*, run_id: str) -> str:
    """Claim and run one optimization: `queued` (or `running` under an expired lease) →
    `running` → `succeeded` | `failed`. Returns its final status, `failed` for a run out of
    attempts, or `not_claimed` (another worker holds it, or it has finished)."""
    lease = OPTIMIZATION_CLAIM.claim(run_id)
    if lease is None:
        return _settle_unclaimable(run_id)
    run = OptimizationRun.objects.select_related("source_version__model", "created_by").get(pk=run_id)
    heartbeat = _heartbeat(lease)
    try:
        _execute(run)
        status, code, message = OptimizationRun.Status.SUCCEEDED, "", ""
    except ApplicationError as exc:
        status, code, message = OptimizationRun.Status.FAILED, exc.code, exc.message
    except recipes.RecipeError as exc:
        status, code, message = OptimizationRun.Status.FAILED, exc.code, exc.message
    except Exception as exc:  # a bug or a broken environment: recorded, never left running
        logger.exception("Optimization %s crashed", run_id)
        status, code, message = (
            OptimizationRun.Status.FAILED,
            "optimization_error",
            f"{type(exc).__name__}: {exc}",
        )
    finally:
        heartbeat.stop()
    if status == OptimizationRun.Status.FAILED and run.result_version is not None:
        # A result the run could not finish measuring or gating must not take an alias.
        ModelVersion.objects.filter(pk=run.result_version.pk).exclude(failure_code="accuracy_gate").filter(
            Q(status=ModelVersion.Status.READY) | Q(failure_code="not_evaluated")
        ).update(
            status=ModelVersion.Status.FAILED,
            failure_code="not_evaluated",
            status_reason=f"Its optimization run failed before the accuracy gate: {message}"[:2000],
        )
    # Only under this worker's lease: a worker that stalled past it and was replaced says nothing.
    OPTIMIZATION_CLAIM.held(lease).update(
        status=status,
        finished_at=timezone.now(),
        error_code=code,
        error_message=message[:2000],
        report=run.report,
        result_version=run.result_version,
        step="done" if status == OptimizationRun.Status.SUCCEEDED else run.step,
        progress=100 if status == OptimizationRun.Status.SUCCEEDED else run.progress,
        lease_expires_at=None,
    )
    return status


def _settle_unclaimable(run_id: str) -> str:
    """`queued` (or `running` under an expired lease) with no attempts left → `failed`
    (`attempts_exhausted`); its result, if registered but never gated, may not take an alias."""
    exhausted = OPTIMIZATION_CLAIM.exhausted(run_id)
    result = exhausted.values_list("result_version", flat=True).first()
    if not exhausted.update(
        status=OptimizationRun.Status.FAILED,
        finished_at=timezone.now(),
        error_code="attempts_exhausted",
        error_message="The optimization did not finish in its attempts (its worker died).",
    ):
        return "not_claimed"
    if result is not None:
        ModelVersion.objects.filter(pk=result, status=ModelVersion.Status.READY).update(
            status=ModelVersion.Status.FAILED,
            failure_code="not_evaluated",
            status_reason="Its optimization run died before the accuracy gate.",
        )
    return OptimizationRun.Status.FAILED


def _execute(run: OptimizationRun) -> None:
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
    run.report = _report(run, source, version, source_path, local_path(version.artifact.name))
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


def _report(
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


# --- The reconciler ----------------------------------------------------------------------------------------


def reconcile_optimizations() -> list[str]:
    """Enqueue again the runs whose worker died (lease expired) or whose message was lost."""
    now = timezone.now()
    grace = now - dt.timedelta(seconds=settings.JOB_QUEUED_GRACE_SECONDS)
    owed = OptimizationRun.objects.filter(
        Q(status=OptimizationRun.Status.QUEUED, created_at__lt=grace) | OPTIMIZATION_CLAIM.lease_expired(now)
    )
    run_ids = [str(pk) for pk in owed.values_list("pk", flat=True)[:100]]
    for run_id in run_ids:
        enqueue_run(uuid.UUID(run_id))
    return run_ids
