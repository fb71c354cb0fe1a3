"""Prometheus metrics of rollouts, by model, version and role (primary, canary, shadow).

The web processes count the primary's and the canaries' answers as a request finishes; the
worker counts the shadow's answers, the pairs it compared and the inputs dropped are counted
where they are dropped. deploy/grafana's "Rollouts" row plots them (ADR 0018).
"""

from prometheus_client import Counter, Histogram

from apps.core.metrics import LATENCY_BUCKETS

ROLLOUT_PREDICTIONS = Counter(
    "mlplatform_rollout_predictions_total",
    "Predictions of an alias under a rollout, by model, version, role (primary, canary, shadow) and status.",
    ["model", "version", "role", "status"],
)
ROLLOUT_LATENCY = Histogram(
    "mlplatform_rollout_latency_seconds",
    "Time per request (per input for a shadow's batch) under a rollout, by model, version and role.",
    ["model", "version", "role"],
    buckets=LATENCY_BUCKETS,
)
SHADOW_PAIRS = Counter(
    "mlplatform_rollout_shadow_pairs_total",
    "Inputs answered by both the primary and the shadow, by whether their top-1 classes agree.",
    ["model", "version", "agree"],
)
SHADOW_DROPPED = Counter(
    "mlplatform_rollout_shadow_dropped_total",
    "Sampled inputs not shadowed, by reason: backlog (the shadow queue was behind), buffer "
    "(the web process's buffer was full), broker (the enqueue failed), ended (the shadow had stopped).",
    ["model", "version", "reason"],
)


def observe(model: str, version: int, role: str, status: str, count: int, seconds: float) -> None:
    ROLLOUT_PREDICTIONS.labels(model, str(version), role, status).inc(count)
    ROLLOUT_LATENCY.labels(model, str(version), role).observe(seconds)
