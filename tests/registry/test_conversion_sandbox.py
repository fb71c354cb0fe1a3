"""What the operating system lets the conversion child do (apps/registry/intake/sandbox.py):
a probe runs in exactly the child's wrapping (the command line and environment the sandbox
gives the converter) and tries to reach a server of this test over TCP."""

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from apps.registry.intake import sandbox

LIMITS = sandbox.Limits(memory_bytes=2 * 1024**3, cpu_seconds=30, file_bytes=1024**2, wall_seconds=30)
# Takes the place of the converter's boot code: connect to the port in argv[5], say what happened.
PROBE = (
    "import os, socket, sys\n"
    "try:\n"
    "    socket.create_connection(('127.0.0.1', int(sys.argv[5])), timeout=5).close()\n"
    "    print('connected')\n"
    "except OSError as exc:\n"
    "    print('refused', exc.errno)\n"
    "print('secret' if 'SECRET_KEY' in os.environ or 'DATABASE_URL' in os.environ else 'no secrets')\n"
)


@pytest.fixture
def server() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def probe(tmp_path, port: int, isolated: bool) -> list[str]:
    command = [*sandbox.child_command(tmp_path, LIMITS, isolated, boot=PROBE), str(port)]
    assert command[command.index("-c") + 1] == PROBE and command[0] == (
        "unshare" if isolated else sys.executable
    )
    done = subprocess.run(
        command,
        env=sandbox.child_environment(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split("\n")


def test_the_isolated_child_cannot_reach_a_server_on_this_machine(tmp_path, server, monkeypatch):
    if not sandbox.network_isolation_available():
        pytest.skip("this kernel refuses unshare --net (docs/conversion.md: what is enforced where)")
    monkeypatch.setenv("SECRET_KEY", "worker-secret")
    lines = probe(tmp_path, server, isolated=True)
    assert lines[0].startswith("refused"), lines  # its loopback is down: ENETUNREACH
    assert lines[1] == "no secrets"


def test_without_isolation_the_same_probe_connects(tmp_path, server):
    """The control: the refusal above comes from the namespace, not from the probe."""
    assert probe(tmp_path, server, isolated=False)[0] == "connected"
