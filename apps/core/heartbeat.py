"""A background heartbeat that renews a worker's lease while the worker works."""

import contextvars
import logging
import threading
from collections.abc import Callable

from django.db import connection

logger = logging.getLogger(__name__)


class Heartbeat:
    """Calls `beat` every `interval` seconds in a thread of its own until `stop()`.

    `beat` returning False ends the heartbeat (the lease was lost). An exception in `beat`
    (the database blinked) is logged and the next beat tries again. The thread runs in a
    copy of the caller's context, so its log lines carry the caller's request id, and it
    closes its own database connection when it ends.
    """

    def __init__(self, beat: Callable[[], bool | None], *, interval: float, name: str) -> None:
        self._beat, self._interval, self.name = beat, interval, name
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._run,), name=name, daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopped.wait(self._interval):
                try:
                    if self._beat() is False:
                        return
                except Exception:  # try again at the next beat
                    logger.warning("Lease renewal (%s) failed", self.name, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    def stop(self, timeout: float = 10) -> None:
        self._stopped.set()
        self._thread.join(timeout=timeout)
