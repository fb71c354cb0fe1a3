"""The peer servers, in their own virtual environments, serving the demo model as the
platform does (decode + preprocess with the platform's functions, ONNX Runtime on 1 thread).

    .venv/bin/python bench/peers.py setup      # create bench/.peers/<name> (pinned, from PyPI)

Each peer gets a virtual environment under bench/.peers (git-ignored) with pinned versions:
MLServer 1.7.1 (with uvloop 0.21.0: later versions crash its workers) and LitServe 0.2.19,
plus the platform's own numpy, Pillow and onnxruntime pins, so the model work is the same.
bench/compare.py starts them with `start` and drives them in the same run as the platform.
"""

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.request import Request, urlopen

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS = BENCH / ".peers"
APPS = BENCH / "peer_apps"
MODEL_WORK = ["numpy==2.4.6", "pillow==13.0.0", "onnxruntime==1.32.0"]  # requirements.txt's pins
PINS = {
    "mlserver": ["mlserver==1.7.1", "uvloop==0.21.0", *MODEL_WORK],
    "litserve": ["litserve==0.2.19", *MODEL_WORK],
}


def setup(name: str) -> Path:
    """The peer's virtual environment, created and installed once; its python."""
    venv = PEERS / name
    python = venv / "bin" / "python"
    marker = venv / "installed.txt"
    if marker.exists() and marker.read_text() == "\n".join(PINS[name]):
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--index-url", "https://pypi.org/simple", *PINS[name]], check=True)
    marker.write_text("\n".join(PINS[name]))
    return python


@dataclass
class Peer:
    """A peer server: how to start it and what one request looks like."""

    name: str
    path: str  # what wrk POSTs to
    process: subprocess.Popen | None = None

    def body(self, jpeg: bytes) -> bytes:
        image = base64.b64encode(jpeg).decode()
        if self.name == "mlserver":  # Open Inference Protocol JSON, one BYTES input
            inputs = [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [image]}]
            return json.dumps({"inputs": inputs}).encode()
        return json.dumps({"image": image}).encode()

    def start(self, port: int, workdir: Path) -> None:
        python = setup(self.name)
        log = (workdir / f"{self.name}.log").open("wb")
        if self.name == "litserve":
            command = [str(python), str(APPS / "litserve_app.py"), str(port)]
            cwd = APPS
        else:
            cwd = _mlserver_folder(workdir, port)
            command = [str(python.parent / "mlserver"), "start", str(cwd)]
        # A session of its own: the peers start worker processes, which must go with them.
        self.process = subprocess.Popen(
            command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait(port, (ROOT / "demo" / "images" / "coffee.jpg").read_bytes())

    def _wait(self, port: int, photo: bytes) -> None:
        deadline = time.monotonic() + 180
        answered = 0
        while time.monotonic() < deadline and answered < 4:  # until both workers have answered
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
            request = Request(f"http://127.0.0.1:{port}{self.path}", data=self.body(photo))
            request.add_header("Content-Type", "application/json")
            try:
                with urlopen(request, timeout=10) as answer:  # noqa: S310 (http, built here)
                    answered += answer.status == 200
            except OSError:
                time.sleep(0.5)
        if answered < 4:
            self.stop()
            raise RuntimeError(f"{self.name} did not answer on port {port}")

    def stop(self) -> None:
        """The peer's whole process group: LitServe's workers outlive a signal to their parent
        (found as orphans spinning at 10 % of a core each after the first runs)."""
        if self.process is None:
            return
        for signum, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)
            try:
                self.process.wait(timeout=wait)
                deadline = time.monotonic() + wait
                while _group_alive(self.process.pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if not _group_alive(self.process.pid):
                    return
            except subprocess.TimeoutExpired:
                continue


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _mlserver_folder(workdir: Path, port: int) -> Path:
    """MLServer's settings: 2 parallel inference workers, adaptive batching 8 / 10 ms."""
    folder = workdir / "mlserver"
    folder.mkdir(exist_ok=True)
    (folder / "mlserver_runtime.py").write_text((APPS / "mlserver_runtime.py").read_text())
    (folder / "model.py").write_text(
        (APPS / "model.py")
        .read_text()
        .replace("ROOT = Path(__file__).resolve().parents[2]", f"ROOT = Path({str(ROOT)!r})")
    )
    settings = {
        "http_port": port,
        "grpc_port": port + 1,
        "metrics_port": port + 2,
        "parallel_workers": 2,
        "debug": False,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    model = {
        "name": "effnet",
        "implementation": "mlserver_runtime.DemoClassifier",
        "max_batch_size": 8,
        "max_batch_time": 0.01,
    }
    (folder / "model-settings.json").write_text(json.dumps(model))
    return folder


PEER_PATHS = {"mlserver": "/v2/models/effnet/infer", "litserve": "/predict"}


def peers(names: list[str]) -> list[Peer]:
    return [Peer(name, PEER_PATHS[name]) for name in names]


if __name__ == "__main__":
    if sys.argv[1:] != ["setup"]:
        sys.exit(__doc__)
    for peer in PINS:
        print(f"{peer}: {setup(peer)}")
