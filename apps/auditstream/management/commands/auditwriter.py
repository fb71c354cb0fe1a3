"""manage.py auditwriter: copy the audit stream into PostgreSQL until stopped (ADR 0030).

Runs next to the web processes whenever AUDIT_MODE=stream (make run, compose, k8s); any
number may run, each taking its own entries. With Redis and PostgreSQL it copies whatever
is in the stream whatever this process's AUDIT_MODE says, so a stream left behind by a
switch back to durable drains. Without them there is nothing to copy: it says so and
waits to be stopped (a deployment's writer does not crash-loop on the embedded default).
"""

import logging
import os
import signal
import socket
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, connection
from redis.exceptions import RedisError

from apps.accounts.quota_counter import redis_client
from apps.auditstream.mode import fallback_reason
from apps.auditstream.writer import Writer

logger = logging.getLogger("apps.auditstream")

MAX_BACKOFF_SECONDS = 5.0


class Command(BaseCommand):
    help = "Copy audit rows from the Redis stream into PostgreSQL in batches (AUDIT_MODE=stream)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="copy what is there, then exit")
        parser.add_argument("--batch", type=int, default=settings.AUDIT_WRITER_BATCH)

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        if not settings.REDIS_URL or connection.vendor != "postgresql":
            reason = fallback_reason() or "no Redis or no PostgreSQL here"
            logger.warning("auditwriter: nothing to copy (%s); waiting to be stopped.", reason)
            if not options["once"]:
                stop.wait()
            return
        consumer = f"{socket.gethostname()}-{os.getpid()}"
        writer = Writer(
            redis_client(),
            settings.AUDIT_STREAM_KEY,
            consumer,
            batch=options["batch"],
            claim_seconds=settings.AUDIT_WRITER_CLAIM_SECONDS,
        )
        logger.info("auditwriter %s copying %s into PostgreSQL", consumer, settings.AUDIT_STREAM_KEY)
        copied = run(writer, stop, once=options["once"])
        logger.info("auditwriter %s stopped after copying %d entries", consumer, copied)


def run(writer: Writer, stop: threading.Event, *, once: bool) -> int:
    """Copy batches until stopped (or, with `once`, until the stream is empty). Redis or
    PostgreSQL away: log, wait with a growing backoff, go on; nothing is acknowledged
    that was not committed."""
    copied, backoff, ready = 0, 0.1, False
    while not stop.is_set():
        try:
            if not ready:
                writer.ensure_group()
                ready = True
            count = writer.copy_once(block_ms=0 if once else 1000)
            copied += count
            backoff = 0.1
            if once and count == 0:
                break
            if 0 < count < writer.batch and not once:
                # A part batch: let rows gather before the next transaction. Copying each
                # request's row in a transaction of its own costs more CPU than the durable mode.
                stop.wait(settings.AUDIT_WRITER_LINGER_SECONDS)
        except (RedisError, DatabaseError) as exc:
            logger.warning("auditwriter: %s; retrying in %.1f s", exc, backoff)
            connection.close()  # a broken connection is replaced on the next query
            ready = False
            stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
    return copied
