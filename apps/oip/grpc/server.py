"""The gRPC server: `inference.GRPCInferenceService`, the standard health service
(`grpc.health.v1.Health`) and server reflection, on one port, served by a pool of
GRPC_MAX_WORKERS threads. Messages over GRPC_MAX_MESSAGE_BYTES are refused by gRPC itself
(RESOURCE_EXHAUSTED) before any handler runs.

Health: both the server ("") and `inference.GRPCInferenceService` are NOT_SERVING until the
readiness checks pass (database, model store, the preloaded models: those of /readyz), then
follow them every `health_interval` seconds; at shutdown they turn NOT_SERVING first, so
that probes and load balancers stop sending calls while the calls in flight finish.
"""

import contextlib
import logging
import threading
from concurrent import futures
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

import grpc
from django.db import close_old_connections, connections
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tritonclient.grpc import service_pb2, service_pb2_grpc

from apps.oip import services
from apps.oip.grpc.servicer import InferenceServicer

logger = logging.getLogger("mlplatform.grpc")

SERVICE_NAME = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
HEALTH_INTERVAL_SECONDS = 10.0


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    executor: futures.ThreadPoolExecutor
    stopping: threading.Event
    watcher: threading.Thread
    max_workers: int

    def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let those in flight finish within `grace` seconds, then close the
        threads' database connections and end the threads."""
        self.stopping.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.watcher.join()
        _close_connections_in_every_thread(self.executor, self.max_workers)
        self.executor.shutdown(wait=True)


def start(
    *,
    address: str,
    port: int,
    max_workers: int,
    max_message_bytes: int,
    health_interval: float = HEALTH_INTERVAL_SECONDS,
) -> RunningServer:
    """Bind `address`:`port` (0: a free port, read back in .port) and start serving."""
    executor = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc")
    server = grpc.server(
        executor,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # Two servers must never share a port unnoticed (gRPC sets SO_REUSEPORT on Linux).
            ("grpc.so_reuseport", 0),
        ],
    )
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (
        SERVICE_NAME,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    _set_health(health_servicer, serving=False)
    bound = server.add_insecure_port(f"{address}:{port}")
    server.start()
    stopping = threading.Event()
    watcher = threading.Thread(
        target=_follow_readiness,
        args=(health_servicer, stopping, health_interval),
        name="grpc-health",
        daemon=True,
    )
    watcher.start()
    return RunningServer(server, bound, health_servicer, executor, stopping, watcher, max_workers)


def _close_connections_in_every_thread(executor: futures.ThreadPoolExecutor, workers: int) -> None:
    """Each pool thread keeps its database connections between calls (as a gunicorn thread
    does, for CONN_MAX_AGE); only that thread may close them. One task per thread, held at a
    barrier until every thread has one, closes each thread's own."""
    barrier = threading.Barrier(workers, timeout=10)

    def close() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        connections.close_all()

    for task in [executor.submit(close) for _ in range(workers)]:
        task.result()


def _set_health(servicer: health.HealthServicer, *, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", SERVICE_NAME):
        servicer.set(name, status)


def _follow_readiness(servicer: health.HealthServicer, stopping: threading.Event, interval: float) -> None:
    try:
        while not stopping.is_set():
            ready = _ready()
            if not stopping.is_set():  # never SERVING again once shutting down
                _set_health(servicer, serving=ready)
            stopping.wait(interval)
    finally:
        connections.close_all()


def _ready() -> bool:
    close_old_connections()
    try:
        return services.server_ready()
    except Exception:
        logger.exception("The readiness check failed")
        return False
    finally:
        close_old_connections()


def start_metrics_exporter(port: int, address: str = "0.0.0.0") -> WSGIServer:  # noqa: S104
    """Serve this process's Prometheus metrics on `port` (0: a free one, in .server_port), as
    a Celery worker does (workers/metrics.py): the gRPC process has no Django /metrics. With
    PROMETHEUS_MULTIPROC_DIR set it shows every process writing there, as /metrics does."""
    from prometheus_client import start_http_server

    from apps.core.metrics import scrape_registry

    httpd, _ = start_http_server(port, addr=address, registry=scrape_registry())
    return httpd
