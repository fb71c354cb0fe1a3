"""A Celery worker's Prometheus exporter: WORKER_METRICS_PORT serves the metrics of the
worker's pool processes (prometheus_client multiprocess mode), for Prometheus to scrape
each worker container (docs/operations.md)."""

import logging
import os

logger = logging.getLogger(__name__)


def start_exporter() -> int | None:
    port = int(os.environ.get("WORKER_METRICS_PORT", "0") or 0)
    if not port:
        return None
    from prometheus_client import start_http_server

    from apps.core.metrics import scrape_registry

    # All interfaces by default: in a container, Prometheus scrapes from outside it.
    addr = os.environ.get("WORKER_METRICS_ADDR", "0.0.0.0")  # noqa: S104
    start_http_server(port, addr=addr, registry=scrape_registry())
    logger.info("Worker metrics on port %s", port)
    return port
