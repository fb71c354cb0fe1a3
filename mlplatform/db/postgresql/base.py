"""PostgreSQL: django-prometheus's instrumented backend, with a cheaper health check.

Django's health check (CONN_HEALTH_CHECKS) sends `SELECT 1` before the first query of
every request that reuses a connection: on the predict path, one more round trip per
request. Here a connection that answered a `SELECT 1` less than
HEALTH_CHECK_QUERY_INTERVAL seconds ago is only polled: an idle connection has nothing
to read, while one the server closed (a restart, `pg_terminate_backend`, an idle
timeout) is readable, with the server's goodbye or the end of the stream. Older
connections, and connections in any state but idle, get Django's own `SELECT 1`.

The poll cannot see a peer that vanished without a word (a failover to another host,
a middlebox that forgot the connection): only a packet sent finds that out. So the
query still runs at least once a second per connection in use, and a silent failure
can cost at most the requests of that second.
"""

import select
import time

from django_prometheus.db.backends.postgresql import base
from psycopg.pq import TransactionStatus

HEALTH_CHECK_QUERY_INTERVAL = 1.0  # seconds


class DatabaseWrapper(base.DatabaseWrapper):
    _queried_at = float("-inf")  # when this connection last answered a query of the check

    def connect(self) -> None:
        super().connect()
        self._queried_at = time.monotonic()  # a new connection has just talked to the server

    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        if _has_input(connection.fileno()):
            # Readable while idle: the server has closed it, or sent something unasked for
            # (a notice). Either way a fresh connection is the safe answer.
            return False
        now = time.monotonic()
        recent = now - self._queried_at < HEALTH_CHECK_QUERY_INTERVAL
        if recent and connection.info.transaction_status == TransactionStatus.IDLE:
            return True
        usable = super().is_usable()  # SELECT 1
        if usable:
            self._queried_at = now
        return usable


def _has_input(fd: int) -> bool:
    """Whether the socket has data or an error waiting (poll(), which, unlike select(),
    takes descriptors above 1023)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))
