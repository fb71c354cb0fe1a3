"""The PostgreSQL backend's health check: a poll of the idle socket, no SELECT 1."""

import select

import pytest
from django.db import connection, connections

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL; CI runs it there"),
]


def test_a_live_idle_connection_is_usable_without_a_query(monkeypatch):
    connection.ensure_connection()

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
