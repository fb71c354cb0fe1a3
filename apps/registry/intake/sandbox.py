"""Running a conversion in a child process with limits, an empty environment and no network.

The worker (Celery, `conversion` queue) never loads an uploaded model itself: it writes a job
file into a fresh scratch directory and starts a separate Python process (child/main.py)
that converts and writes a result file. What the operating system enforces on the child:

- RLIMIT_AS (address space), RLIMIT_CPU (CPU seconds; SIGXCPU, then SIGKILL at the hard
  limit), RLIMIT_FSIZE (largest file it may write), RLIMIT_CORE 0; set by the child on
  itself before it reads the job, so nothing from the upload runs without them.
- A wall-clock deadline: the parent kills the child's process group when it passes.
- An environment of a few fixed variables (PATH, HOME and TMPDIR in the scratch directory,
  thread counts): no DATABASE_URL, SECRET_KEY or any other variable of the worker.
- No network when `unshare --net` works (a new network namespace holding only a loopback
  that is down): CONVERSION_NETWORK_ISOLATION `auto` uses it when the kernel allows,
  `required` fails the conversion when it does not, `off` never tries.

Not enforced here: the filesystem (the child runs as the worker's user and can read what
that user can: the container and its read-only root filesystem bound that), and the
network where unshare is not permitted (Kubernetes: the NetworkPolicy in
deploy/k8s/worker-conversion.yaml; compose: the conversion worker's own network).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[3]  # the project folder, for the child's imports
# Limits first, then the converter: the child caps itself before it reads anything uploaded.
_BOOT = (
    "import resource, sys\n"
    "mem, cpu, fsize = (int(v) for v in sys.argv[2:5])\n"
    "resource.setrlimit(resource.RLIMIT_AS, (mem, mem))\n"
    "resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))\n"
    "resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
    f"sys.path.insert(0, {str(_ROOT)!r})\n"
    "from apps.registry.intake.child.main import main\n"
    "sys.exit(main(sys.argv[:2]))\n"
)
_SIGNALS: dict[int, tuple[str, str]] = {
    signal.SIGXCPU: ("cpu_time_limit", "The converter used up its CPU time ({cpu} s) and was stopped."),
    signal.SIGKILL: (
        "killed",
        "The converter was killed (its CPU time or memory ran out: {cpu} s, {mem} MB).",
    ),
    signal.SIGXFSZ: (
        "file_size_limit",
        "The converter tried to write a file over {fsize} MB and was stopped.",
    ),
    signal.SIGABRT: ("crashed", "The converter aborted (out of memory? the limit is {mem} MB)."),
    signal.SIGSEGV: ("crashed", "The converter crashed (out of memory? the limit is {mem} MB)."),
}


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    cpu_seconds: int
    file_bytes: int
    wall_seconds: int


@dataclass
class Outcome:
    ok: bool
    code: str = ""
    message: str = ""
    report: dict = field(default_factory=dict)
    onnx_path: Path | None = None
    sandbox: dict = field(default_factory=dict)


def child_environment(scratch: Path) -> dict[str, str]:
    """The child's whole environment: nothing of the worker's (no secrets)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(scratch),
        "TMPDIR": str(scratch),
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
    }


@lru_cache(maxsize=1)
def network_isolation_available() -> bool:
    """Whether `unshare --net` works here (a root container without the capability, or a
    kernel refusing unprivileged user namespaces, says no)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--net", "--map-root-user", "true"], capture_output=True, timeout=10, check=False
    )
    return probe.returncode == 0


def run_conversion(job: dict, source: Path, limits: Limits, *, network: str, scratch: Path) -> Outcome:
    """Convert `source` per `job` (format, options, parity settings) in a child process, with
    `scratch` (a fresh folder) as its working folder. The ONNX file, if any, is in `scratch`."""
    isolated = network != "off" and network_isolation_available()
    sandbox = _describe(limits, isolated)
    if network == "required" and not isolated:
        return Outcome(
            False,
            "sandbox_unavailable",
            "Network isolation is required but unshare --net is not permitted here.",
            sandbox=sandbox,
        )
    job = {
        **job,
        "source": str(source),
        "scratch": str(scratch),
        "output": str(scratch / "model.onnx"),
        "result": str(scratch / "result.json"),
    }
    (scratch / "job.json").write_text(json.dumps(job))
    returncode = _run_child(scratch, limits, isolated)
    return _outcome(scratch, returncode, limits, sandbox)


def child_command(scratch: Path, limits: Limits, isolated: bool, *, boot: str = _BOOT) -> list[str]:
    """The command line of the child: `boot` (the limits, then the converter) in an isolated
    Python, inside a new network namespace when `isolated`. Tests run other code in exactly
    this wrapping to see what the operating system lets it do."""
    command = [sys.executable, "-I", "-c", boot, str(scratch / "job.json")]
    command += [str(limits.memory_bytes), str(limits.cpu_seconds), str(limits.file_bytes)]
    if isolated:
        command = ["unshare", "--net", "--map-root-user", *command]
    return command


def _run_child(scratch: Path, limits: Limits, isolated: bool) -> int | None:
    command = child_command(scratch, limits, isolated)
    with open(scratch / "child.log", "wb") as log:
        child = subprocess.Popen(
            command,
            cwd=scratch,
            env=child_environment(scratch),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        try:
            return child.wait(timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)  # the child and anything it started
            child.wait()
            return None


def _outcome(scratch: Path, returncode: int | None, limits: Limits, sandbox: dict) -> Outcome:
    mb = 1024 * 1024
    values = {"cpu": limits.cpu_seconds, "mem": limits.memory_bytes // mb, "fsize": limits.file_bytes // mb}
    if returncode is None:
        message = f"The conversion took longer than {limits.wall_seconds} s and was stopped."
        return Outcome(False, "wall_time_limit", message, sandbox=sandbox)
    result_file = scratch / "result.json"
    if returncode < 0 or not result_file.exists():
        signum = -returncode if returncode < 0 else 0
        code, message = _SIGNALS.get(
            signum, ("crashed", "The converter exited without a result (exit status {status}).")
        )
        tail = _log_tail(scratch / "child.log")
        if "MemoryError" in tail or "bad_alloc" in tail or "Cannot allocate memory" in tail:
            code, message = "out_of_memory", "The converter ran out of memory (the limit is {mem} MB)."
        return Outcome(False, code, message.format(status=returncode, **values), sandbox=sandbox)
    result = json.loads(result_file.read_text())
    if not result.pop("ok"):
        message = result["message"]
        if result["code"] == "out_of_memory":
            message = f"{message} The limit is {values['mem']} MB."
        return Outcome(False, result["code"], message, sandbox=sandbox)
    return Outcome(True, report=result, onnx_path=scratch / "model.onnx", sandbox=sandbox)


def _log_tail(path: Path, size: int = 4096) -> str:
    data = path.read_bytes()[-size:] if path.exists() else b""
    return data.decode("utf-8", "replace")


def _describe(limits: Limits, isolated: bool) -> dict:
    return {
        "process": "child",
        "memory_bytes": limits.memory_bytes,
        "cpu_seconds": limits.cpu_seconds,
        "file_bytes": limits.file_bytes,
        "wall_seconds": limits.wall_seconds,
        "environment": "empty",
        "network_isolated": isolated,
    }


def scratch_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="mlp-convert-"))
