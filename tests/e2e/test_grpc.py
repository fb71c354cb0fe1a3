"""End to end: `manage.py grpcserver` as a real process, with production settings, on the
configured database (its own PostgreSQL database in CI), called with tritonclient.grpc
unmodified; then stopped with SIGTERM as Docker and Kubernetes stop it."""

import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests import live
from tests.live import ROOT, free_port, wait_for

pytestmark = pytest.mark.e2e

PHOTO = ROOT / "demo" / "images" / "coffee.jpg"


@pytest.fixture(scope="module")
def grpc_env(e2e_dir: Path, database_url: str) -> dict[str, str]:
    """Production settings on a fresh database with the demo model; its API key in MLP_KEY."""
    env = live.production_env(e2e_dir, database_url, "e2e-grpc", LOG_FORMAT="plain")
    live.migrate(env)
    demo = live.manage(env, "bootstrap_demo", quiet=True)
    env["MLP_KEY"] = re.search(r"(mlp_[a-z0-9]{8}_[A-Za-z0-9_-]{43})", demo).group(1)
    return env


def test_grpcserver_serves_tritonclient_and_stops_on_sigterm(
    grpc_env: dict[str, str], tmp_path: Path
) -> None:
    import tritonclient.grpc as grpcclient

    port, metrics_port = free_port(), free_port()
    log = (tmp_path / "grpc.log").open("w+")
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "grpcserver",
            "--address",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env={**grpc_env, "GRPC_METRICS_PORT": str(metrics_port), "GRPC_MAX_WORKERS": "4"},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{port}")
    headers = {"authorization": f"Api-Key {grpc_env['MLP_KEY']}"}
    try:
        wait_for(lambda: _ready(client), 90, "the gRPC server to be ready")
        model = client.get_model_metadata("efficientnet-lite0", headers=headers)
        assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [
            ("input", "FP32", [-1, 3, 224, 224])
        ]
        tensor = grpcclient.InferInput("input", [2, 3, 224, 224], "FP32")
        tensor.set_data_from_numpy(np.zeros((2, 3, 224, 224), np.float32))
        assert client.infer("efficientnet-lite0", [tensor], headers=headers).as_numpy("logits").shape == (
            2,
            1000,
        )
        image = grpcclient.InferInput("input", [1], "BYTES")
        image.set_data_from_numpy(np.array([PHOTO.read_bytes()], np.object_))
        top = client.infer(
            "efficientnet-lite0",
            [image],
            outputs=[grpcclient.InferRequestedOutput("logits", class_count=1)],
            headers=headers,
        )
        score, _, label = top.as_numpy("logits")[0][0].decode().split(":", 2)
        assert float(score) > 0 and label
        scrape = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert 'mlplatform_grpc_calls_total{code="OK",method="ModelInfer"} 2.0' in scrape
        assert 'source="v2-grpc",status="succeeded"' in scrape
    finally:
        client.close()
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        finally:
            log.seek(0)
            output = log.read()
            log.close()
    assert code == 0, output
    assert "Preloaded models: efficientnet-lite0@production" in output
    assert "gRPC server stopping" in output


def _ready(client: object) -> bool:
    from tritonclient.utils import InferenceServerException

    try:
        return client.is_server_ready()
    except InferenceServerException:  # not listening yet
        return False
