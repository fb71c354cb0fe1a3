"""ONNX Runtime sessions, cached per process. No ORM imports: web processes and workers share it.

`SessionCache` is an LRU of `InferenceSession`s keyed by (version id, sha256),
bounded by count and by bytes of model files, thread-safe, and single-flight:
when many first requests for one model arrive together, one thread loads it and
the others wait for that load instead of loading it again.
"""

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from apps.core import metrics

logger = logging.getLogger(__name__)

_OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class RuntimeConfig:
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    optimization_level: str = "all"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    allow_spinning: bool = False
    warmup: bool = True

    def session_options(self) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.graph_optimization_level = _OPTIMIZATION_LEVELS[self.optimization_level]
        # Spinning threads burn CPU between calls; a server shares its CPU with decoding.
        spin = "1" if self.allow_spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        return options

    def available_providers(self) -> list[str]:
        """The configured providers this build has, always ending with the CPU fallback."""
        available = set(ort.get_available_providers())
        missing = [p for p in self.providers if p not in available]
        if missing:
            logger.warning("ORT_PROVIDERS %s are not in this ONNX Runtime build; skipped", missing)
        chosen = [p for p in self.providers if p in available and p != "CPUExecutionProvider"]
        return [*chosen, "CPUExecutionProvider"]


@dataclass
class LoadedModel:
    key: tuple[int, str]
    session: ort.InferenceSession
    size_bytes: int
    load_seconds: float
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(None, feeds)
        return dict(zip(self.output_names, outputs, strict=True))


_WARM_UP_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def _warm_up(session: ort.InferenceSession) -> None:
    """One run on zeros of the declared shapes (dynamic dims as 1), so the first
    real request does not pay for lazy initialisation."""
    feeds: dict[str, np.ndarray] = {}
    for arg in session.get_inputs():
        dims = arg.shape if isinstance(arg.shape, list) else []
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in dims]
        dtype = _WARM_UP_DTYPES.get(arg.type)
        if dtype is None:
            return  # an unusual input type: skip the warm-up rather than guess
        feeds[arg.name] = np.zeros(shape, dtype=dtype)
    try:
        session.run(None, feeds)
    except Exception:  # a model with dynamic spatial dims may refuse 1x1; the first request warms it
        logger.debug("Warm-up run failed; continuing without it", exc_info=True)


class ModelFileMismatch(Exception):
    """The model file on disk is not the one recorded: its sha256 differs."""


def load_model(key: tuple[int, str], path: Path, config: RuntimeConfig, *, sha256: str = "") -> LoadedModel:
    """Load the model at `path`. Given `sha256`, a file with another digest (replaced or
    damaged on disk) is refused: every process must serve exactly the recorded version."""
    started = time.perf_counter()
    if sha256:
        with path.open("rb") as file:
            found = hashlib.file_digest(file, "sha256").hexdigest()
        if found != sha256:
            raise ModelFileMismatch(f"{path} has sha256 {found}; {sha256} was recorded.")
    session = ort.InferenceSession(
        str(path), sess_options=config.session_options(), providers=config.available_providers()
    )
    if config.warmup:
        _warm_up(session)
    return LoadedModel(
        key=key,
        session=session,
        size_bytes=path.stat().st_size,
        load_seconds=time.perf_counter() - started,
        input_names=[i.name for i in session.get_inputs()],
        output_names=[o.name for o in session.get_outputs()],
    )


@dataclass
class _Loading:
    """One load in progress: done when it ends, with its error if it failed."""

    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class SessionCache:
    """LRU of loaded models, bounded by `max_models` and `max_bytes` (file sizes)."""

    def __init__(self, *, max_models: int, max_bytes: int, config: RuntimeConfig) -> None:
        self.max_models = max_models
        self.max_bytes = max_bytes
        self.config = config
        self._models: OrderedDict[tuple[int, str], LoadedModel] = OrderedDict()
        self._loading: dict[tuple[int, str], _Loading] = {}
        self._lock = threading.Lock()
        self.loads = 0  # how many times a model was loaded (for tests and metrics)

    def get(self, key: tuple[int, str], path: Callable[[], Path] | Path) -> LoadedModel:
        """The loaded model for `key`, loading it from `path` once if needed."""
        while True:
            with self._lock:
                model = self._models.get(key)
                if model is not None:
                    self._models.move_to_end(key)
                    return model
                loading = self._loading.get(key)
                if loading is None:
                    loading = self._loading[key] = _Loading()
                    break  # this thread loads it
            loading.done.wait()  # another thread is loading it; then look again
            if loading.error is not None:
                # That load failed: the requests that waited for it fail with it, instead of
                # each trying again in turn. The next request tries afresh.
                raise loading.error
        try:
            # The key is (version id, sha256): the file must be that version's.
            model = load_model(key, path() if callable(path) else path, self.config, sha256=key[1])
            with self._lock:
                self.loads += 1
                self._models[key] = model
                self._evict()
                metrics.SESSIONS_LOADED.set(len(self._models))
            metrics.MODEL_LOAD_SECONDS.observe(model.load_seconds)
            logger.info("Loaded model %s in %.0f ms", key, model.load_seconds * 1000)
            return model
        except BaseException as exc:
            loading.error = exc
            raise
        finally:
            with self._lock:
                self._loading.pop(key, None)
            loading.done.set()

    def _evict(self) -> None:
        while len(self._models) > 1 and (
            len(self._models) > self.max_models or self.total_bytes() > self.max_bytes
        ):
            evicted, _ = self._models.popitem(last=False)
            logger.info("Evicted model %s from the session cache", evicted)

    def total_bytes(self) -> int:
        return sum(m.size_bytes for m in self._models.values())

    def keys(self) -> list[tuple[int, str]]:
        with self._lock:
            return list(self._models)

    def discard(self, key: tuple[int, str]) -> bool:
        """Forget one loaded model (the next request loads it again); False if it was not loaded."""
        with self._lock:
            found = self._models.pop(key, None) is not None
            metrics.SESSIONS_LOADED.set(len(self._models))
        if found:
            logger.info("Unloaded model %s from the session cache", key)
        return found

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            metrics.SESSIONS_LOADED.set(0)


_cache: SessionCache | None = None
_cache_lock = threading.Lock()


def session_cache(factory: Callable[[], SessionCache]) -> SessionCache:
    """The process-wide cache, created on first use by `factory`."""
    global _cache
    if _cache is None:
        with _cache_lock:
            if _cache is None:
                _cache = factory()
    return _cache


def reset_session_cache() -> None:
    global _cache
    with _cache_lock:
        _cache = None
        metrics.SESSIONS_LOADED.set(0)


def describe_inputs(model: LoadedModel) -> list[dict[str, Any]]:
    return [
        {"name": a.name, "type": a.type, "shape": a.shape if isinstance(a.shape, list) else []}
        for a in model.session.get_inputs()
    ]
