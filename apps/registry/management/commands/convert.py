"""Convert a scikit-learn or PyTorch model to ONNX, check it against the original, optionally register it.

python manage.py convert sklearn --pickle M.joblib --features N --out M.onnx [--sample X.npy] [--register ...]
python manage.py convert torch --factory package.module:callable --out M.onnx [--register ...]

The converters are optional: pip install -r requirements-extras.txt.
"""

import argparse
import importlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils.text import slugify

from apps.core.exceptions import ApplicationError
from apps.registry.conversion import pytorch, scikit_learn
from apps.registry.conversion.checking import DEFAULT_ATOL, DEFAULT_RTOL
from apps.registry.conversion.report import ConversionReport
from apps.registry.models import MLModel

_TRUST = "Loading it runs code from it: only use files you trust."


class Command(BaseCommand):
    help = (
        "Convert a scikit-learn estimator (a pickle) or a PyTorch module (from a factory) to ONNX, "
        "check its outputs against the original, and optionally register it as a new version. "
        "Needs the optional converters: pip install -r requirements-extras.txt."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        frameworks = parser.add_subparsers(dest="framework", required=True, metavar="{sklearn,torch}")
        sklearn = frameworks.add_parser("sklearn", help="A fitted scikit-learn estimator or pipeline.")
        sklearn.add_argument(
            "--pickle",
            required=True,
            type=Path,
            help=f"The fitted model, saved by joblib or pickle. {_TRUST}",
        )
        sklearn.add_argument("--features", required=True, type=int, help="Number of input columns.")
        sklearn.add_argument(
            "--sample",
            type=Path,
            help="Rows to check the conversion on: .npy or .csv (default: 64 random normal rows).",
        )
        sklearn.add_argument("--target-opset", type=int, help="Default: the newest skl2onnx was tested with.")
        torch = frameworks.add_parser("torch", help="A PyTorch module.")
        torch.add_argument(
            "--factory",
            required=True,
            help=f"package.module:callable returning (module, example_inputs). {_TRUST}",
        )
        torch.add_argument("--opset", type=int, default=18)
        torch.add_argument("--input-names", default="input", help="Comma-separated, one per example input.")
        torch.add_argument("--output-names", default="output", help="Comma-separated.")
        torch.add_argument("--static-batch", action="store_true", help="Export the batch dimension as fixed.")
        for sub in (sklearn, torch):
            self._add_common_arguments(sub)

    def _add_common_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", required=True, type=Path, help="Where to write the .onnx file.")
        parser.add_argument("--atol", type=float, default=DEFAULT_ATOL)
        parser.add_argument("--rtol", type=float, default=DEFAULT_RTOL)
        registering = parser.add_argument_group("registering (as register_model does)")
        registering.add_argument("--register", action="store_true", help="Register and validate the result.")
        registering.add_argument("--name", help="Model name (default: the output file's name, slugified).")
        registering.add_argument("--labels", type=Path, help="Labels: one per line, or a JSON list.")
        registering.add_argument("--alias", help="Point this alias at the version once it is ready.")
        registering.add_argument("--owner", help="Username of the owner (default: the first superuser).")
        registering.add_argument("--task", default=MLModel.Task.TENSOR, choices=MLModel.Task.values)
        registering.add_argument("--description", default="")

    def handle(self, *args: object, **options: Any) -> None:
        registering = ("name", "labels", "alias", "owner")
        if not options["register"] and any(options[key] for key in registering):
            raise CommandError("--name, --labels, --alias and --owner only apply with --register.")
        try:
            if options["framework"] == "sklearn":
                report = self._convert_sklearn(options)
            else:
                report = self._convert_torch(options)
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(
            f"Wrote {report.path} ({report.size_bytes} bytes, opset {report.opset}, "
            f"sha256 {report.sha256[:12]}): max abs diff {report.max_abs_diff:.3g} "
            f"over {report.samples_checked} samples"
        )
        if options["register"]:
            self._register(report.path, options)

    def _convert_sklearn(self, options: dict[str, Any]) -> ConversionReport:
        estimator = _load_pickle(options["pickle"])
        sample = _load_sample(options["sample"], options["features"])
        return scikit_learn.export_sklearn(
            estimator,
            sample,
            options["out"],
            target_opset=options["target_opset"],
            atol=options["atol"],
            rtol=options["rtol"],
        )

    def _convert_torch(self, options: dict[str, Any]) -> ConversionReport:
        module, example_inputs = _call_factory(options["factory"])
        return pytorch.export_torch(
            module,
            example_inputs,
            options["out"],
            input_names=options["input_names"].split(","),
            output_names=options["output_names"].split(","),
            dynamic_batch=not options["static_batch"],
            opset=options["opset"],
            atol=options["atol"],
            rtol=options["rtol"],
        )

    def _register(self, path: Path, options: dict[str, Any]) -> None:
        name = options["name"] or slugify(path.stem)
        fields = {key: options[key] for key in ("labels", "alias", "owner") if options[key]}
        call_command(
            "register_model",
            name=name,
            file=path,
            task=options["task"],
            description=options["description"],
            stdout=self.stdout,
            stderr=self.stderr,
            **fields,
        )


def _load_pickle(path: Path) -> Any:
    if not path.is_file():
        raise CommandError(f"No such file: {path}")
    try:
        import joblib
    except ImportError:
        with path.open("rb") as fh:
            return pickle.load(fh)  # noqa: S301 — the help text says to load only trusted files
    return joblib.load(path)


def _load_sample(path: Path | None, features: int) -> np.ndarray:
    if path is None:
        return np.random.default_rng(0).standard_normal((64, features)).astype(np.float32)
    if not path.is_file():
        raise CommandError(f"No such file: {path}")
    sample = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path, delimiter=",")
    sample = np.atleast_2d(sample)
    if sample.shape[1] != features:
        raise CommandError(f"--sample has {sample.shape[1]} columns but --features is {features}.")
    return sample


def _call_factory(spec: str) -> tuple[Any, tuple]:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise CommandError(f"--factory must look like package.module:callable, not {spec!r}.")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise CommandError(f"Cannot import {spec}: {exc}") from exc
    result = factory()
    if not isinstance(result, tuple) or len(result) != 2:
        raise CommandError(f"{spec}() must return (module, example_inputs).")
    module, example_inputs = result
    return module, tuple(example_inputs) if isinstance(example_inputs, tuple | list) else (example_inputs,)
