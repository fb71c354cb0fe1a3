"""What the benchmarks share: manage.py runs, the demo model's registration, the bench superuser."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo" / "efficientnet_lite0"

CREATE_SUPERUSER = [
    "shell",
    "-c",
    "from apps.accounts.models import User; User.objects.create_superuser('bench', '', None)",
]


def register_demo(name: str = "effnet", alias: str | None = "production") -> list[str]:
    """`manage.py` arguments that register the demo EfficientNet-Lite0 (validated in-process)."""
    args = [
        "register_model",
        "--name",
        name,
        "--file",
        str(DEMO / "model.onnx"),
        "--labels",
        str(DEMO / "labels.txt"),
        "--preprocessing",
        str(DEMO / "preprocessing.json"),
    ]
    return [*args, "--alias", alias] if alias else args


def manage(env: dict[str, str], *args: str) -> str:
    """Run `manage.py` with `env` in this interpreter; its standard output."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout
