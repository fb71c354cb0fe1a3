"""Guard rails, checked periodically (Celery beat, ROLLOUT_GUARD_INTERVAL_SECONDS).

A canary past its error-rate or latency threshold over at least `min_requests` answers stops
the whole rollout (the alias stays on the primary). A shadow whose top-1 classes disagree
with the primary's more than `max_shadow_disagreement` over at least `shadow_min_pairs` pairs
stops shadowing and flags its version (`shadow_reason`); the rollout's canary split goes on.
"""

import logging

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.rollouts import pairing, selectors
from apps.rollouts.models import Rollout
from apps.rollouts.services import end

logger = logging.getLogger(__name__)


def check_guards() -> list[int]:
    """Apply every active rollout's guard rails; the ids of rollouts stopped or whose shadow
    stopped. Per candidate one bounded query; per shadow two."""
    acted = []
    guarded = Rollout.objects.filter(status=Rollout.Status.ACTIVE).filter(
        Q(max_error_rate__isnull=False)
        | Q(max_latency_p95_ms__isnull=False)
        | Q(max_shadow_disagreement__isnull=False, shadow_stopped_at__isnull=True)
    )
    for rollout in guarded.select_related("model", "shadow"):
        reason = guard_breach(rollout)
        if reason is not None and _stop(rollout, reason):
            acted.append(rollout.pk)
            continue
        reason = shadow_breach(rollout)
        if reason is not None and _stop_shadow(rollout, reason):
            acted.append(rollout.pk)
    return acted


def guard_breach(rollout: Rollout) -> str | None:
    """Why a candidate of `rollout` breaks its guard rails, or None."""
    if rollout.max_error_rate is None and rollout.max_latency_p95_ms is None:
        return None
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


def shadow_breach(rollout: Rollout) -> str | None:
    """Why the shadow of `rollout` breaks its guard rail, or None."""
    if rollout.max_shadow_disagreement is None or not rollout.is_shadowing:
        return None
    stats = pairing.paired_stats(rollout)
    if stats.comparable < rollout.shadow_min_pairs or stats.disagreement is None:
        return None
    if stats.disagreement > rollout.max_shadow_disagreement:
        shadow = rollout.shadow
        assert shadow is not None  # a rollout that is shadowing has its shadow
        return (
            f"v{shadow.number} flagged: top-1 disagreement {stats.disagreement:.3f} > "
            f"{rollout.max_shadow_disagreement} over {stats.comparable} pairs"
        )
    return None


def _stop(rollout: Rollout, reason: str) -> bool:
    with transaction.atomic():
        locked = Rollout.objects.select_for_update().get(pk=rollout.pk)
        if not locked.is_active:
            return False
        end(locked, Rollout.Status.STOPPED, reason, None)
    logger.warning("Rollout %s stopped: %s", rollout.pk, reason)
    return True


def _stop_shadow(rollout: Rollout, reason: str) -> bool:
    """Stop the shadow only; saving the rollout clears this process's targets at once, and
    other processes stop mirroring within LOCAL_CACHE_SECONDS (what they still send is
    dropped by the worker, counted as 'ended')."""
    with transaction.atomic():
        locked = Rollout.objects.select_for_update().get(pk=rollout.pk)
        if not locked.is_shadowing:
            return False
        locked.shadow_stopped_at, locked.shadow_reason = timezone.now(), reason
        locked.save(update_fields=["shadow_stopped_at", "shadow_reason", "updated_at"])
    logger.warning("Rollout %s: shadow stopped: %s", rollout.pk, reason)
    return True
