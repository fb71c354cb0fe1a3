"""The lease heartbeat shared by job, validation and optimization workers."""

import threading

import pytest

from apps.core.heartbeat import Heartbeat
from apps.core.middleware import request_id_var


@pytest.mark.django_db
def test_a_failed_beat_is_logged_and_the_next_one_tries_again(log_records):
    beats, third = [], threading.Event()

    def beat() -> None:
        beats.append(1)
        if len(beats) == 3:
            third.set()
        if len(beats) == 1:
            raise RuntimeError("the database blinked")

    token = request_id_var.set("req-hb")
    try:
        heartbeat = Heartbeat(beat, interval=0.01, name="test")
    finally:
        request_id_var.reset(token)
    assert third.wait(5)  # renewals went on after the failure
    heartbeat.stop()
    failures = [r for r in log_records if r.getMessage() == "Lease renewal (test) failed"]
    assert [r.request_id for r in failures] == ["req-hb"]


@pytest.mark.django_db
def test_a_beat_that_reports_the_lease_lost_ends_the_heartbeat():
    beats = []

    def beat() -> bool:
        beats.append(1)
        return False

    heartbeat = Heartbeat(beat, interval=0.01, name="test")
    heartbeat._thread.join(5)
    assert not heartbeat._thread.is_alive()
    assert beats == [1]
    heartbeat.stop()
