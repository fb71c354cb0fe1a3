"""deploy/nginx/nginx.conf passes the Open Inference Protocol's gRPC calls over TLS and
HTTP/2 to the gRPC server: the real nginx with the repository's configuration (moved to this
machine's paths and free ports), the real gRPC server in this process, and tritonclient.grpc
with TLS and the development certificate, as a client outside the compose stack would call.

Skipped without nginx, except in CI (see test_deploy_config.py)."""

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from apps.inference.models import Prediction
from apps.oip.grpc import server
from tests.deploy.test_deploy_config import CERT_SCRIPT, NGINX_CONF, require_tool
from tests.inference.conftest import tiny_version  # noqa: F401  (a fixture)

pytestmark = pytest.mark.django_db(transaction=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def local_conf(tmp_path: Path, *, http: int, https: int, grpc_port: int) -> Path:
    """The compose configuration on this machine: its certificate folder, ports and upstream."""
    conf = NGINX_CONF.read_text()
    conf = conf.replace("/etc/nginx/certs", str(tmp_path / "certs")).replace("user nginx;", "")
    conf = conf.replace("/var/run/nginx.pid", str(tmp_path / "nginx.pid"))
    conf = re.sub(r"listen 80\b", f"listen 127.0.0.1:{http}", conf)
    conf = re.sub(r"listen 443\b", f"listen 127.0.0.1:{https}", conf)
    assert "grpc://grpc:8001" in conf
    conf = conf.replace("grpc://grpc:8001", f"grpc://127.0.0.1:{grpc_port}")
    for folder in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):  # no root-owned defaults
        conf = conf.replace("http {", f"http {{\n    {folder}_temp_path {tmp_path / folder};", 1)
    (tmp_path / "nginx.conf").write_text(conf)
    return tmp_path / "nginx.conf"


@pytest.fixture
def nginx_in_front(tmp_path) -> Iterator[tuple[int, Path]]:
    """(the TLS port, the certificate) of nginx in front of a gRPC server."""
    nginx = require_tool("nginx")
    env = {**os.environ, "CERT_DIR": str(tmp_path / "certs")}
    subprocess.run(["bash", str(CERT_SCRIPT)], env=env, capture_output=True, check=True)
    running = server.start(address="127.0.0.1", port=0, max_workers=2, max_message_bytes=1 << 22)
    https = free_port()
    conf = local_conf(tmp_path, http=free_port(), https=https, grpc_port=running.port)
    process = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while socket.socket().connect_ex(("127.0.0.1", https)) != 0:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        yield https, tmp_path / "certs" / "tls.crt"
    finally:
        process.terminate()
        process.wait(10)
        running.stop(grace=None)


def test_grpc_calls_pass_through_nginx_over_tls(nginx_in_front, key_client, tiny_version):  # noqa: F811
    port, certificate = nginx_in_front
    client = grpcclient.InferenceServerClient(
        url=f"localhost:{port}", ssl=True, root_certificates=str(certificate)
    )
    try:
        assert client.is_server_live()
        assert client.get_server_metadata().name == "mlplatform"
        headers = {"x-api-key": key_client().key}
        tensor = grpcclient.InferInput("input", [1, 3, 8, 8], "FP32")
        tensor.set_data_from_numpy(np.zeros((1, 3, 8, 8), np.float32))
        result = client.infer("tiny", [tensor], headers={**headers, "x-request-id": "through-nginx"})
        assert result.as_numpy("logits").shape == (1, 3)
        with pytest.raises(InferenceServerException) as raised:
            client.infer("no-such-model", [tensor], headers=headers)
        assert raised.value.status() == "StatusCode.NOT_FOUND"
    finally:
        client.close()
    row = Prediction.objects.get(source="v2-grpc")
    assert row.request_id == "through-nginx"  # nginx passes the client's X-Request-ID along
    credentials = grpc.ssl_channel_credentials(certificate.read_bytes())
    with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert check.status in (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
