"""Writes to rollouts: start a split on an alias, promote a candidate, abort, and the guard
rails that stop a bad candidate. Each check leaves the alias as it was."""

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.core.exceptions import Conflict, InvalidInput, NotFound
from apps.inference.models import Prediction
from apps.registry.models import MLModel, ModelAlias, ModelVersion
from apps.registry.services import alias_set
from apps.rollouts import selectors
from apps.rollouts.models import Rollout, RolloutCandidate

logger = logging.getLogger(__name__)

MAX_CANDIDATES = 10


@dataclass(frozen=True)
class Guards:
    """A candidate past either threshold, over at least `min_requests` answers, stops the rollout."""

    max_error_rate: float | None = None
    max_latency_p95_ms: float | None = None
    min_requests: int = 100


@transaction.atomic
def rollout_start(
    *,
    model: MLModel,
    alias_name: str,
    candidates: list[tuple[ModelVersion, int]],
    guards: Guards = Guards(),
    user: User | None,
) -> Rollout:
    """Split `alias_name` between its version (the primary) and candidates, by weight (percent).

    Each weight is 1-99 and together they leave the primary at least 1% (a candidate that
    should take everything is promoted instead): 400 invalid_weights. Each candidate is a
    ready version of this model with the primary's outputs and labels (409 with what
    differs). One active rollout per alias (409 rollout_exists; a constraint decides races)."""
    _check_weights([weight for _, weight in candidates])
    MLModel.objects.select_for_update().get(pk=model.pk)  # serialise with alias moves
    alias = ModelAlias.objects.select_related("version").filter(model=model, name=alias_name).first()
    if alias is None:
        raise NotFound(f"Model '{model.name}' has no alias '{alias_name}'.", code="alias_not_found")
    _check_no_active(model, alias_name)
    numbers = [version.number for version, _ in candidates]
    if len(set(numbers)) != len(numbers) or alias.version.number in numbers:
        raise InvalidInput(
            "Each candidate is a different version, and none is the alias's own.",
            code="invalid_candidates",
            details={"primary": alias.version.number, "candidates": numbers},
        )
    for version, _ in candidates:
        check_compatible(primary=alias.version, candidate=version)
    rollout = Rollout(
        model=model,
        alias_name=alias_name,
        primary=alias.version,
        max_error_rate=guards.max_error_rate,
        max_latency_p95_ms=guards.max_latency_p95_ms,
        min_requests=guards.min_requests,
        first_prediction_id=Prediction.objects.order_by("-id").values_list("id", flat=True).first() or 0,
        created_by=user,
    )
    try:
        with transaction.atomic():
            rollout.save()
    except IntegrityError as exc:  # a concurrent start won
        raise Conflict(f"Alias '{alias_name}' already has an active rollout.", code="rollout_exists") from exc
    RolloutCandidate.objects.bulk_create(
        [RolloutCandidate(rollout=rollout, version=version, weight=weight) for version, weight in candidates]
    )
    rollout.save(update_fields=["updated_at"])  # its candidates are in: clear the targets' caches
    return rollout


def _check_weights(weights: list[int]) -> None:
    if not 1 <= len(weights) <= MAX_CANDIDATES:
        raise InvalidInput(f"Give 1 to {MAX_CANDIDATES} candidates.", code="invalid_candidates")
    if any(not 1 <= w <= 99 for w in weights) or sum(weights) > 99:
        raise InvalidInput(
            "Each candidate's weight is 1-99 (percent) and together they leave the primary at "
            "least 1; to send everything to a candidate, promote it.",
            code="invalid_weights",
            details={"weights": weights, "sum": sum(weights), "primary": 100 - sum(weights)},
        )


def _check_no_active(model: MLModel, alias_name: str) -> None:
    active = Rollout.objects.filter(model=model, alias_name=alias_name, status=Rollout.Status.ACTIVE).first()
    if active is not None:
        raise Conflict(
            f"Alias '{alias_name}' already has an active rollout (#{active.pk}).",
            code="rollout_exists",
            details={"rollout": active.pk},
        )


def check_compatible(*, primary: ModelVersion, candidate: ModelVersion) -> None:
    """409 unless `candidate` could answer for `primary`: a ready version of the same model,
    with the same outputs (names, types, shapes) and labels. Details say what differs."""
    if candidate.model_id != primary.model_id:
        raise Conflict(
            f"Version {candidate.number} belongs to another model.",
            code="candidate_of_another_model",
            details={"version": candidate.number},
        )
    if candidate.status != ModelVersion.Status.READY:
        raise Conflict(
            f"Version {candidate.number} is {candidate.status}; a candidate must be ready.",
            code="version_not_ready",
            details={"version": candidate.number, "status": candidate.status},
        )
    differs = {}
    for what, mine, theirs in (
        ("outputs", primary.signature.get("outputs"), candidate.signature.get("outputs")),
        ("labels", primary.labels, candidate.labels),
    ):
        if mine != theirs:
            differs[what] = {"primary": mine, "candidate": theirs}
    if differs:
        raise Conflict(
            f"Version {candidate.number} differs from the primary (v{primary.number}) in its "
            f"{' and '.join(differs)}; a candidate answers in the primary's place.",
            code="candidate_incompatible",
            details={"version": candidate.number, **differs},
        )


@transaction.atomic
def rollout_promote(*, rollout: Rollout, version: ModelVersion | None, user: User | None) -> Rollout:
    """Move the alias to a candidate (the only one, or `version`) and end the rollout as
    promoted, in one transaction; the alias history records the move."""
    rollout = _lock_active(rollout, "promote")
    candidates = {c.version.number: c.version for c in rollout.candidates.select_related("version")}
    if version is None and len(candidates) > 1:
        raise InvalidInput(
            "This rollout has several candidates: name the version to promote.",
            code="version_required",
            details={"candidates": sorted(candidates)},
        )
    chosen = version or next(iter(candidates.values()))
    if chosen.number not in candidates:
        raise InvalidInput(
            f"Version {chosen.number} is not a candidate of this rollout.",
            code="not_a_candidate",
            details={"candidates": sorted(candidates)},
        )
    _end(rollout, Rollout.Status.PROMOTED, f"v{chosen.number} promoted", user, promoted_to=chosen)
    alias_set(model=rollout.model, name=rollout.alias_name, version=chosen, user=user)
    return rollout


@transaction.atomic
def rollout_abort(*, rollout: Rollout, user: User | None, reason: str = "") -> Rollout:
    """End the rollout; the alias stays on the primary (it never left it)."""
    rollout = _lock_active(rollout, "abort")
    _end(rollout, Rollout.Status.ABORTED, reason or "aborted", user)
    return rollout


def _lock_active(rollout: Rollout, action: str) -> Rollout:
    MLModel.objects.select_for_update().get(pk=rollout.model_id)  # serialise with alias moves
    rollout = Rollout.objects.select_for_update().select_related("model").get(pk=rollout.pk)
    if not rollout.is_active:
        raise Conflict(
            f"Rollout #{rollout.pk} is {rollout.status}; only an active rollout can {action}.",
            code="rollout_not_active",
            details={"status": rollout.status, "reason": rollout.reason},
        )
    return rollout


def _end(
    rollout: Rollout, status: str, reason: str, user: User | None, promoted_to: ModelVersion | None = None
) -> None:
    rollout.status, rollout.reason, rollout.ended_at, rollout.ended_by = status, reason, timezone.now(), user
    rollout.promoted_to = promoted_to
    rollout.save(update_fields=["status", "reason", "ended_at", "ended_by", "promoted_to", "updated_at"])


def check_guards() -> list[int]:
    """Stop every active rollout one of whose candidates passes a guard rail; the ids stopped.
    Periodic (Celery beat, ROLLOUT_GUARD_INTERVAL_SECONDS): per candidate one bounded query."""
    stopped = []
    guarded = Rollout.objects.filter(status=Rollout.Status.ACTIVE).exclude(
        max_error_rate__isnull=True, max_latency_p95_ms__isnull=True
    )
    for rollout in guarded.select_related("model"):
        reason = guard_breach(rollout)
        if reason is not None:
            with transaction.atomic():
                locked = Rollout.objects.select_for_update().get(pk=rollout.pk)
                if locked.is_active:
                    _end(locked, Rollout.Status.STOPPED, reason, None)
                    stopped.append(rollout.pk)
                    logger.warning("Rollout %s stopped: %s", rollout.pk, reason)
    return stopped


def guard_breach(rollout: Rollout) -> str | None:
    """Why a candidate of `rollout` breaks its guard rails, or None."""
    for candidate in rollout.candidates.select_related("version"):
        stats = selectors.version_stats(rollout, candidate.version.number, route="canary")
        if stats.requests < rollout.min_requests:
            continue
        where = f"v{candidate.version.number} over {stats.requests} requests"
        if rollout.max_error_rate is not None and stats.error_rate > rollout.max_error_rate:
            return f"{where}: error rate {stats.error_rate:.3f} > {rollout.max_error_rate}"
        p95 = stats.latency_p95_ms
        if rollout.max_latency_p95_ms is not None and p95 is not None and p95 > rollout.max_latency_p95_ms:
            return f"{where}: latency p95 {p95:.1f} ms > {rollout.max_latency_p95_ms} ms"
    return None
