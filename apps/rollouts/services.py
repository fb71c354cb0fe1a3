"""Writes to rollouts: start a split on an alias, promote a candidate, abort, and the guard
rails that stop a bad candidate. Each check leaves the alias as it was."""

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.core.exceptions import Conflict, InvalidInput, NotFound
from apps.inference.models import Prediction
from apps.registry.models import MLModel, ModelAlias, ModelVersion
from apps.registry.services import alias_set
from apps.rollouts.models import Rollout, RolloutCandidate

MAX_CANDIDATES = 10


@dataclass(frozen=True)
class Guards:
    """A candidate past either threshold, over at least `min_requests` answers, stops the
    rollout; a shadow past `max_shadow_disagreement` over `shadow_min_pairs` pairs stops."""

    max_error_rate: float | None = None
    max_latency_p95_ms: float | None = None
    min_requests: int = 100
    max_shadow_disagreement: float | None = None
    shadow_min_pairs: int = 100


@dataclass(frozen=True)
class Shadow:
    """A version that answers `percent` of the primary's requests again, off the request path."""

    version: ModelVersion
    percent: int


@transaction.atomic
def rollout_start(
    *,
    model: MLModel,
    alias_name: str,
    candidates: list[tuple[ModelVersion, int]],
    guards: Guards = Guards(),
    shadow: Shadow | None = None,
    user: User | None,
) -> Rollout:
    """Split `alias_name` between its version (the primary) and candidates, by weight (percent).

    Each weight is 1-99 and together they leave the primary at least 1% (a candidate that
    should take everything is promoted instead): 400 invalid_weights. Each candidate is a
    ready version of this model with the primary's outputs and labels (409 with what
    differs). One active rollout per alias (409 rollout_exists; a constraint decides races).
    A shadow alone (no candidates) is a rollout too: every caller keeps the primary."""
    if candidates or shadow is None:
        _check_weights([weight for _, weight in candidates])
    if shadow is not None:
        _check_shadow_percent(shadow.percent)
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
    if shadow is not None:
        _check_shadow_version(alias.version, shadow.version)
    rollout = Rollout(
        model=model,
        alias_name=alias_name,
        primary=alias.version,
        max_error_rate=guards.max_error_rate,
        max_latency_p95_ms=guards.max_latency_p95_ms,
        min_requests=guards.min_requests,
        shadow=shadow.version if shadow else None,
        shadow_percent=shadow.percent if shadow else 0,
        max_shadow_disagreement=guards.max_shadow_disagreement,
        shadow_min_pairs=guards.shadow_min_pairs,
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


def _check_shadow_percent(percent: int) -> None:
    if not 1 <= percent <= 100:
        raise InvalidInput(
            "A shadow mirrors 1-100 percent of the primary's requests.",
            code="invalid_shadow",
            details={"shadow_percent": percent},
        )


def _check_shadow_version(primary: ModelVersion, version: ModelVersion) -> None:
    """A shadow answers the primary's inputs next to it: another version, taking the same
    inputs, with the same outputs and labels (so their answers pair)."""
    if version.pk == primary.pk:
        raise InvalidInput(
            "The shadow is another version than the alias's own.",
            code="invalid_shadow",
            details={"primary": primary.number, "shadow": version.number},
        )
    check_compatible(primary=primary, candidate=version)
    mine, theirs = primary.signature.get("inputs"), version.signature.get("inputs")
    if mine != theirs:
        raise Conflict(
            f"Version {version.number} takes other inputs than the primary (v{primary.number}); "
            "a shadow gets the primary's inputs.",
            code="candidate_incompatible",
            details={"version": version.number, "inputs": {"primary": mine, "candidate": theirs}},
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
    end(rollout, Rollout.Status.PROMOTED, f"v{chosen.number} promoted", user, promoted_to=chosen)
    alias_set(model=rollout.model, name=rollout.alias_name, version=chosen, user=user)
    return rollout


@transaction.atomic
def rollout_abort(*, rollout: Rollout, user: User | None, reason: str = "") -> Rollout:
    """End the rollout; the alias stays on the primary (it never left it)."""
    rollout = _lock_active(rollout, "abort")
    end(rollout, Rollout.Status.ABORTED, reason or "aborted", user)
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


def end(
    rollout: Rollout, status: str, reason: str, user: User | None, promoted_to: ModelVersion | None = None
) -> None:
    rollout.status, rollout.reason, rollout.ended_at, rollout.ended_by = status, reason, timezone.now(), user
    rollout.promoted_to = promoted_to
    rollout.save(update_fields=["status", "reason", "ended_at", "ended_by", "promoted_to", "updated_at"])
