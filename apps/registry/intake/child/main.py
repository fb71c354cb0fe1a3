"""The child process's entry: read the job, convert, write the result; never raise.

    python -I -c "…main()" JOB.json

The job (written by apps/registry/intake/sandbox.py) names the format, the source file, the
output path and the parity settings. The result file holds either {"ok": true, ...the
converted_from report} or {"ok": false, "code", "message"}. A crash, a signal (CPU time,
memory) or a missing result file is the parent's to explain.
"""

import importlib.abc
import json
import sys
import traceback
from pathlib import Path

from apps.registry.intake.child.common import ConversionFailed

_OPSETS = {"savedmodel": 17, "keras": 17, "torchscript": 17, "torch-export": 18}


class _BlockedModules(importlib.abc.MetaPathFinder):
    """Makes the named modules fail to import: how the tests stand for a platform installed
    without the converter extras (the setting is for tests; docs/conversion.md)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        if any(fullname == name or fullname.startswith(f"{name}.") for name in self.names):
            raise ImportError(f"No module named '{fullname}' (blocked)")


def convert(job: dict) -> dict:
    from apps.registry.intake.child import tensorflow_models, torch_models

    converters = {
        "savedmodel": tensorflow_models.convert_savedmodel,
        "keras": tensorflow_models.convert_keras,
        "torchscript": torch_models.convert_torchscript,
        "torch-export": torch_models.convert_torch_export,
    }
    job = {"opset": _OPSETS[job["format"]], **job}
    return converters[job["format"]](job, Path(job["scratch"]))


def main(argv: list[str] | None = None) -> int:
    job_path = Path((argv or sys.argv)[1])
    job = json.loads(job_path.read_text())
    if job.get("blocked_modules"):
        sys.meta_path.insert(0, _BlockedModules(job["blocked_modules"]))
    try:
        result = {"ok": True, **convert(job)}
    except ConversionFailed as exc:
        result = {"ok": False, "code": exc.code, "message": exc.message}
    except MemoryError:
        result = {"ok": False, "code": "out_of_memory", "message": "The converter ran out of memory."}
    except Exception as exc:  # a converter bug or an input it chokes on: its words, for the version
        traceback.print_exc()
        result = {"ok": False, "code": "conversion_error", "message": f"{type(exc).__name__}: {exc}"}
    Path(job["result"]).write_text(json.dumps(result))
    return 0
