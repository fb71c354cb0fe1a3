"""`python manage.py grpcserver`: the Open Inference Protocol over gRPC (docs/operations.md).

It loads the models under PRELOAD_ALIASES first, as a gunicorn worker does, then serves
until SIGTERM or SIGINT; then the health service turns NOT_SERVING, new calls are refused
and those in flight get `--grace` seconds to finish.
"""

import gc
import logging
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from apps.inference.sessions import preload_sessions
from apps.oip.grpc import server

logger = logging.getLogger("mlplatform.grpc")


class Command(BaseCommand):
    help = "Serve the Open Inference Protocol over gRPC, with the gRPC health service and reflection."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--address", default="[::]", help="Address to listen on. Default: [::] (all).")
        parser.add_argument("--port", type=int, default=None, help="Default: GRPC_PORT (8001); 0 picks one.")
        parser.add_argument("--max-workers", type=int, default=None, help="Default: GRPC_MAX_WORKERS (8).")
        parser.add_argument(
            "--grace", type=float, default=30.0, help="Seconds calls in flight get at shutdown. Default: 30."
        )
        parser.add_argument("--no-preload", action="store_true", help="Load models on first use only.")

    def handle(self, *args: Any, **options: Any) -> None:
        port = settings.GRPC_PORT if options["port"] is None else options["port"]
        workers = options["max_workers"] or settings.GRPC_MAX_WORKERS
        if not 0 <= port <= 65535 or workers < 1 or settings.GRPC_MAX_MESSAGE_BYTES < 1:
            raise CommandError("The port must be 0 to 65535; the workers and the message size at least 1.")
        if not options["no_preload"]:
            _preload()
        if settings.GRPC_METRICS_PORT:
            server.start_metrics_exporter(settings.GRPC_METRICS_PORT)
            logger.info("gRPC server metrics on port %s", settings.GRPC_METRICS_PORT)
        try:
            running = server.start(
                address=options["address"],
                port=port,
                max_workers=workers,
                max_message_bytes=settings.GRPC_MAX_MESSAGE_BYTES,
            )
        except RuntimeError as exc:  # the address is taken or not this machine's
            raise CommandError(f"Cannot listen on {options['address']}:{port}: {exc}") from exc
        stopping = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
        # Read by scripts and tests that start it on port 0.
        self.stdout.write(f"gRPC server listening on {options['address']}:{running.port}", ending="\n")
        self.stdout.flush()
        stopping.wait()
        logger.info("gRPC server stopping: %s s for the calls in flight", options["grace"])
        running.stop(options["grace"])


def _preload() -> None:
    try:
        loaded = preload_sessions()
        logger.info("Preloaded models: %s", ", ".join(loaded) or "none")
    except Exception:
        # The database is unreachable, say: serve anyway; the models load on first use, and
        # the health service says NOT_SERVING until the readiness checks pass.
        logger.exception("Could not preload models; they load on first use")
    finally:
        connections.close_all()  # this thread serves no calls
    # What is loaded now lives as long as the process: out of the collector's reach, as in
    # gunicorn's workers (gunicorn.conf.py), so that full collections stay short.
    gc.collect()
    gc.freeze()
