"""What a prediction is for: a model and one of its versions, found by number or alias,
and routed when the alias has an active rollout (apps/rollouts/routing.py).

The hot path of every prediction, whichever door it came in by: (name, version, alias)
→ (model, version, split) is kept per process for LOCAL_CACHE_SECONDS (cleared at once by
registry and rollout changes in this process, apps/inference/signals.py), so a rollout
started, promoted or ended elsewhere reaches every process within that time, as an alias
move does.
"""

from typing import NamedTuple

from django.conf import settings

from apps.accounts.credentials import Credential
from apps.accounts.models import ApiKey, User
from apps.core.exceptions import Conflict, InvalidInput, NotFound
from apps.core.localcache import LocalTTLCache
from apps.registry import selectors as registry_selectors
from apps.registry.models import MLModel, ModelAlias, ModelVersion
from apps.rollouts import routing

targets = LocalTTLCache(ttl=lambda: settings.LOCAL_CACHE_SECONDS)


class Target(NamedTuple):
    """The model and version that answer; `alias` as asked ('' for a version number);
    `route` is 'primary' or 'canary' under an active rollout, else ''."""

    model: MLModel
    version: ModelVersion
    alias: str
    route: str = ""


def _lookup(
    name: str, version: int | None, alias: str
) -> tuple[MLModel, ModelVersion, routing.Split | None] | None:
    if version is not None:
        found = ModelVersion.objects.select_related("model").filter(model__name=name, number=version).first()
        return (found.model, found, None) if found is not None else None
    pointers = ModelAlias.objects.select_related("model", "version")
    pointer = pointers.filter(model__name=name, name=alias).first()
    if pointer is None:
        return None
    pointer.version.model = pointer.model
    split = routing.split_of(pointer.model_id, alias)
    for _, candidate in split.candidates if split else ():
        candidate.model = pointer.model
    if split is not None and split.shadow is not None:
        split.shadow.model = pointer.model
    return pointer.model, pointer.version, split


def split_for(name: str, alias: str) -> routing.Split | None:
    """The active rollout of `name`'s `alias` as the target was resolved with: read from the
    same per-process cache, so asking again when a request finishes costs no query."""
    found = targets.get_or_set((name, None, alias), lambda: _lookup(name, None, alias))
    return found[2] if found is not None else None


def resolve_target(
    *,
    user: User,
    api_key: ApiKey | Credential | None,
    name: str,
    version: int | None,
    alias: str | None,
    routing_key: str | None = None,
) -> Target:
    """The model and version a prediction is for: version N, or the version under
    `alias` (default production) — or, when that alias has an active rollout, the version
    its split gives this caller's routing key (`routing_key` as the client sent it, else
    the API key, else the user). A version number is never rerouted. At most two queries
    on a cache miss (the alias, its rollout), none when cached; visibility is checked on
    every request. The error paths tell an unknown or invisible model (404
    model_not_found) from an unknown version or alias; a key limited to other models gets
    403 model_not_granted; a routing key over 256 bytes is 400 invalid_routing_key."""
    if version is not None and alias:
        raise InvalidInput("Give either version or alias, not both.", code="invalid_input")
    given = routing.check_routing_key(routing_key)
    check_granted(user=user, api_key=api_key, name=name)
    alias = "" if version is not None else (alias or "production")
    found = targets.get_or_set((name, version, alias), lambda: _lookup(name, version, alias))
    if found is not None and registry_selectors.model_is_visible(user=user, model=found[0]):
        model, chosen, split = found
        if split is None:
            return Target(model, chosen, alias)
        key = routing.routing_key(given=given, user=user, api_key=api_key)
        routed, route = split.choose(chosen, key)
        return Target(model, routed, alias, route)
    model = registry_selectors.model_get_visible(user=user, name=name)
    if version is not None:
        raise NotFound(f"Model '{model.name}' has no version {version}.", code="version_not_found")
    raise NotFound(f"Model '{model.name}' has no alias '{alias}'.", code="alias_not_found")


def check_granted(*, user: User, api_key: ApiKey | Credential | None, name: str) -> None:
    """403 model_not_granted for a key limited to other models (404 if the model is not
    visible at all); no query for a key that may use every model."""
    if api_key is not None and not api_key.allows_model(name):
        registry_selectors.model_get_visible(user=user, name=name, api_key=api_key)  # raises


def check_servable(version: ModelVersion) -> None:
    """409 version_not_ready unless the version may serve predictions (sync, jobs, every door)."""
    if not version.is_servable:
        raise Conflict(
            f"Version {version.number} is {version.status}; only a ready version serves predictions.",
            code="version_not_ready",
            details={"version": version.number, "status": version.status},
        )
