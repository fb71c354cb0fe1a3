"""The platform's own Prometheus metrics, in prometheus_client's multiprocess mode.

Every gunicorn worker process and every Celery pool process writes its samples to
files in PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py and workers/metrics.py set it
up); a scrape adds them up, so every process is counted. Without that variable
(tests, `manage.py shell`) the metrics live in this process's default registry.

No Django imports at module level: the ONNX runtime (which has no ORM) records
model loads here too.
"""

import os
from collections.abc import Iterable, Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

PREDICTIONS = Counter(
    "mlplatform_predictions_total",
    "Predictions (one per input), by model version, source (sync, job) and status.",
    ["model", "version", "source", "status"],
)
INFERENCE_SECONDS = Histogram(
    "mlplatform_inference_seconds",
    "Time per model call, by stage: preprocess, infer, postprocess.",
    ["model", "version", "stage"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram("mlplatform_batch_size", "Inputs per model call.", ["source"], buckets=BATCH_BUCKETS)
SESSIONS_LOADED = Gauge(
    "mlplatform_model_sessions_loaded",
    "ONNX Runtime sessions held in memory (summed over live processes).",
    multiprocess_mode="livesum",
)
MODEL_LOAD_SECONDS = Histogram(
    "mlplatform_model_load_seconds",
    "Time to load a model into an ONNX Runtime session.",
    buckets=LATENCY_BUCKETS,
)
JOBS = Counter(
    "mlplatform_jobs_total",
    "Batch jobs by status reached: submitted, succeeded, failed, cancelled.",
    ["status"],
)
JOB_ITEMS = Counter("mlplatform_job_items_total", "Batch-job items processed, by status.", ["status"])
THROTTLED = Counter("mlplatform_throttled_total", "Requests refused by a rate limit, by scope.", ["scope"])
# The gRPC door (manage.py grpcserver): HTTP requests are counted by django-prometheus, gRPC
# calls here. `method` is the RPC's name (ModelInfer...), `code` the gRPC status (OK, NOT_FOUND...).
GRPC_CALLS = Counter(
    "mlplatform_grpc_calls_total",
    "gRPC calls of inference.GRPCInferenceService, by method and status code.",
    ["method", "code"],
)
GRPC_CALL_SECONDS = Histogram(
    "mlplatform_grpc_call_seconds",
    "Time per gRPC call of inference.GRPCInferenceService, by method.",
    ["method"],
    buckets=LATENCY_BUCKETS,
)


def observe_stages(model: str, version: int, timings_ms: dict[str, float]) -> None:
    for stage, key in (("preprocess", "preprocess"), ("infer", "inference"), ("postprocess", "postprocess")):
        if key in timings_ms:
            INFERENCE_SECONDS.labels(model, str(version), stage).observe(timings_ms[key] / 1000)


def broker_queue_depths(broker_url: str, queues: list[str]) -> list[int] | None:
    """Messages waiting in each queue (Redis: the length of the queue's list); None when
    the broker cannot say (another transport, or it is down)."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return None
    import redis

    try:
        client = redis.Redis.from_url(broker_url, socket_connect_timeout=1, socket_timeout=1)
        with client.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.llen(queue)
            depths = pipe.execute()
        client.close()
    except redis.RedisError:
        return None
    return [int(depth) for depth in depths]


class QueueDepthCollector:
    """mlplatform_queue_depth{queue}: messages waiting in each Celery queue, read from the
    broker at scrape time."""

    def __init__(self, broker_url: str, queues: Iterable[str]) -> None:
        self.broker_url = broker_url
        self.queues = list(queues)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "mlplatform_queue_depth", "Messages waiting in a Celery queue.", labels=["queue"]
        )
        depths = broker_queue_depths(self.broker_url, self.queues)  # None: no samples (alerts see absence)
        for queue, depth in zip(self.queues, depths or [], strict=False):
            family.add_metric([queue], float(depth))
        yield family


def scrape_registry() -> CollectorRegistry:
    """Every process's metrics (multiprocess mode), or this process's own."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


def scrape(*, broker_url: str, queues: Iterable[str]) -> bytes:
    """The text exposition of the metrics plus the broker's queue depths."""
    queue_registry = CollectorRegistry()
    queue_registry.register(QueueDepthCollector(broker_url, queues))
    return generate_latest(scrape_registry()) + generate_latest(queue_registry)


def _zero_known_series() -> None:
    """Counters for the label values known in advance start at 0, so dashboards and alert
    rules see a series from the first scrape instead of "no data"."""
    for scope in ("predict", "jobs", "registry_write", "auth_failures", "quota"):
        THROTTLED.labels(scope)
    for status in ("submitted", "succeeded", "failed", "cancelled"):
        JOBS.labels(status)
    for status in ("succeeded", "failed"):
        JOB_ITEMS.labels(status)
    GRPC_CALLS.labels("ModelInfer", "OK")
    GRPC_CALL_SECONDS.labels("ModelInfer")


_zero_known_series()
