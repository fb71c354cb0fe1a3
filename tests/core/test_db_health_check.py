"""The PostgreSQL backend's health check: a poll of the idle socket, and SELECT 1 at most
once a second per connection."""

import select

import pytest
from django.db import connection, connections

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL; CI runs it there"),
]


def test_a_recently_checked_connection_is_usable_without_a_query(monkeypatch):
    connection.ensure_connection()
    assert connection.is_usable()  # checked with a query just now, or connected just now

    def no_round_trips(*args, **kwargs):
        raise AssertionError("the health check sent a query")

    monkeypatch.setattr(connection.connection, "cursor", no_round_trips)
    monkeypatch.setattr(connection.connection, "execute", no_round_trips)
    assert connection.is_usable()


def test_a_connection_the_server_closed_is_not_usable_and_is_replaced():
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    fd = connection.connection.fileno()
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()
    select.select([fd], [], [], 10)  # wait for the server's goodbye to arrive, not a fixed sleep
    assert not connection.is_usable()
    # What Django does at the start of a request: check, close, and reconnect on first use.
    connection.health_check_done = False
    connection.close_if_health_check_failed()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


def test_a_connection_not_checked_for_a_while_gets_a_query(monkeypatch):
    connection.ensure_connection()
    connection._queried_at -= 60  # as if its last query of the check was a minute ago
    sent = []
    real_cursor = connection.connection.cursor

    def counting_cursor(*args, **kwargs):
        sent.append(1)
        return real_cursor(*args, **kwargs)

    monkeypatch.setattr(connection.connection, "cursor", counting_cursor)
    assert connection.is_usable()
    assert sent  # SELECT 1 went to the server
    sent.clear()
    assert connection.is_usable()  # and now it is recent again: a poll only
    assert not sent


def test_a_socket_past_descriptor_1023_can_be_polled():
    import os
    import resource

    from mlplatform.db.postgresql.base import _has_input

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= 1500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2048), hard))
    read, write = os.pipe()
    high = os.dup2(read, 1500)
    try:
        assert not _has_input(high)
        os.write(write, b"x")
        assert _has_input(high)
    finally:
        for fd in (read, write, high):
            os.close(fd)
