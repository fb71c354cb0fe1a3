"""Each process's ONNX Runtime sessions: the cache built from settings, and the preload."""

import logging

from django.conf import settings

from apps.core.exceptions import ApplicationError
from apps.inference import runtime
from apps.registry.models import ModelAlias, ModelVersion
from apps.registry.storage import local_path

logger = logging.getLogger(__name__)


def _new_cache() -> runtime.SessionCache:
    return runtime.SessionCache(
        max_models=settings.SESSION_CACHE_MAX_MODELS,
        max_bytes=settings.SESSION_CACHE_MAX_BYTES,
        config=runtime.RuntimeConfig(
            intra_op_threads=settings.ORT_INTRA_OP_THREADS,
            optimization_level=settings.ORT_GRAPH_OPTIMIZATION,
            providers=tuple(settings.ORT_PROVIDERS),
        ),
    )


def sessions() -> runtime.SessionCache:
    return runtime.session_cache(_new_cache)


def loaded_model(version: ModelVersion) -> runtime.LoadedModel:
    try:
        return sessions().get((version.pk, version.sha256), lambda: local_path(version.artifact.name))
    except runtime.ModelFileMismatch as exc:
        logger.error("Refusing to serve %s v%s: %s", version.model.name, version.number, exc)
        raise ApplicationError(
            f"The stored file of version {version.number} does not match its recorded sha256; "
            "it is not served until an operator restores it.",
            code="model_file_mismatch",
            status_code=500,
            details={"version": version.number},
        ) from exc


def preload_targets() -> list[ModelAlias]:
    """The aliases under PRELOAD_ALIASES whose versions a process keeps loaded: as many as
    the session cache holds (SESSION_CACHE_MAX_MODELS, SESSION_CACHE_MAX_BYTES); the rest
    load on first use. Loading more would only evict the first ones again."""
    aliases = (
        ModelAlias.objects.filter(
            name__in=settings.PRELOAD_ALIASES, version__status=ModelVersion.Status.READY
        )
        .select_related("version", "model")
        .order_by("model__name", "name")
    )
    chosen: list[ModelAlias] = []
    seen: set[tuple[int, str]] = set()
    total = 0
    for alias in aliases:
        key = (alias.version.pk, alias.version.sha256)
        if key in seen:
            chosen.append(alias)
            continue
        fits = len(seen) < settings.SESSION_CACHE_MAX_MODELS and (
            not seen or total + alias.version.size_bytes <= settings.SESSION_CACHE_MAX_BYTES
        )
        if not fits:
            logger.warning(
                "Not preloading %s@%s: the session cache holds no more (it loads on first use)",
                alias.model.name,
                alias.name,
            )
            continue
        seen.add(key)
        total += alias.version.size_bytes
        chosen.append(alias)
    return chosen


def preload_sessions() -> list[str]:
    """Load the versions of preload_targets() (at process start), so first requests are fast."""
    loaded = []
    for alias in preload_targets():
        try:
            loaded_model(alias.version)
            loaded.append(f"{alias.model.name}@{alias.name}")
        except Exception:  # one broken model must not stop the process from serving the others
            logger.exception("Could not preload %s@%s", alias.model.name, alias.name)
    return loaded
