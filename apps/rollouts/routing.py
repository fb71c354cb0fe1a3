"""Which version of a split alias answers a caller: a stable hash of (rollout, routing key)
into 100 buckets, laid against the candidates' cumulative weights; the primary takes the
rest. The same key gets the same version for the life of a rollout, in every process.

`split_of` is read once per cache lifetime (apps/inference/targets.py keeps it with the
alias's version), so choosing costs no query on the predict path.
"""

import hashlib
from dataclasses import dataclass

from apps.accounts.credentials import Credential, recorded_ids
from apps.accounts.models import User
from apps.core.exceptions import InvalidInput
from apps.registry.models import ModelVersion
from apps.rollouts.models import CANARY, PRIMARY, Rollout, RolloutCandidate

ROUTING_KEY_MAX_BYTES = 256
BUCKETS = 100


@dataclass(frozen=True)
class Split:
    """An active rollout as routing needs it: (upper bucket bound, version) per candidate,
    and its shadow version with the percent of the primary's requests it mirrors."""

    rollout_id: int
    candidates: tuple[tuple[int, ModelVersion], ...]
    shadow: ModelVersion | None = None
    shadow_percent: int = 0

    def shadows(self, request_id: str) -> bool:
        """Whether this request of the primary's is mirrored: a stable sample by request id
        (not random, so a test or an operator can tell which requests were chosen)."""
        if self.shadow is None or not request_id:
            return False
        return (
            self.shadow_percent >= BUCKETS
            or bucket(self.rollout_id, f"shadow\x00{request_id}") < self.shadow_percent
        )

    def choose(self, primary: ModelVersion, key: str) -> tuple[ModelVersion, str]:
        """The version `key` is routed to, and why: PRIMARY or CANARY."""
        point = bucket(self.rollout_id, key)
        for bound, version in self.candidates:
            if point < bound:
                return version, CANARY
        return primary, PRIMARY


def bucket(rollout_id: int, key: str) -> int:
    """0-99, uniform over keys, stable across processes and restarts (not Python's hash)."""
    digest = hashlib.blake2b(f"{rollout_id}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def split_of(model_id: int, alias: str) -> Split | None:
    """The alias's active rollout, if any: one query when there is none, two when there is
    (the rollout with its shadow, then its candidates with their versions)."""
    rollout = (
        Rollout.objects.select_related("shadow__model")
        .filter(model_id=model_id, alias_name=alias, status=Rollout.Status.ACTIVE)
        .first()
    )
    if rollout is None:
        return None
    candidates = (
        RolloutCandidate.objects.select_related("version__model").filter(rollout=rollout).order_by("id")
    )
    bounds, total = [], 0
    for candidate in candidates:
        total += candidate.weight
        bounds.append((total, candidate.version))
    shadowing = rollout.is_shadowing
    return Split(
        rollout_id=rollout.pk,
        candidates=tuple(bounds),
        shadow=rollout.shadow if shadowing else None,
        shadow_percent=rollout.shadow_percent if shadowing else 0,
    )


def check_routing_key(given: str | None) -> str:
    """The `X-Routing-Key` header (or `x-routing-key` metadata) as given; 400 past 256 bytes."""
    given = (given or "").strip()
    if len(given.encode()) > ROUTING_KEY_MAX_BYTES:
        raise InvalidInput(
            f"A routing key is at most {ROUTING_KEY_MAX_BYTES} bytes.",
            code="invalid_routing_key",
            details={"limit_bytes": ROUTING_KEY_MAX_BYTES},
        )
    return given


def routing_key(*, given: str, user: User, api_key: Credential | None) -> str:
    """Whose traffic this is: the given key, else the API key (or the OAuth application),
    else the user. Prefixed, so a given key can never pose as another caller's."""
    if given:
        return f"given:{given}"
    ids = recorded_ids(api_key)
    if ids["api_key_id"] is not None:
        return f"key:{ids['api_key_id']}"
    if ids["oauth_application_id"] is not None:
        return f"app:{ids['oauth_application_id']}:{user.pk}"
    return f"user:{user.pk}"
