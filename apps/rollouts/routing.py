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
    """An active rollout as routing needs it: (upper bucket bound, version) per candidate."""

    rollout_id: int
    candidates: tuple[tuple[int, ModelVersion], ...]

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
    """The alias's active rollout, if any: one query (candidates with their versions)."""
    candidates = list(
        RolloutCandidate.objects.select_related("version__model")
        .filter(rollout__model_id=model_id, rollout__alias_name=alias, rollout__status=Rollout.Status.ACTIVE)
        .order_by("id")
    )
    if not candidates:
        return None
    bounds, total = [], 0
    for candidate in candidates:
        total += candidate.weight
        bounds.append((total, candidate.version))
    return Split(rollout_id=candidates[0].rollout_id, candidates=tuple(bounds))


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
