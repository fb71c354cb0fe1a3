"""auto-int8: an accuracy-aware search for the smallest, fastest static int8 model that
passes the accuracy gate, in the manner of Intel Neural Compressor and Microsoft Olive.

1. Static QDQ with per-channel weights, once per calibration method (MinMax, Entropy,
   Percentile). Each candidate is measured against the source: size, p50 latency at
   batch 1 (interleaved with the source), and the gate on the evaluation set.
2. If none passes: the sensitivity of each weighted node (Conv, Gemm, MatMul) under the
   best method, measured as the output error (KL divergence from the source's softmax on
   a sample of the set) when that node alone stays in float, against the error with every
   node quantized. The ranges are calibrated once and cached, so each probe only
   re-quantizes.
3. The most sensitive nodes are left in float, 1, 2, 4, 8, ... of them until the gate
   passes, then bisected down to the fewest that pass.

The chosen candidate is the smallest of those that pass, then the fastest. Every step
checks the time box first; a step under way finishes, so a search can overrun its box by
one step. No ORM: the service passes paths, a prepared evaluation set and callables.
"""

import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from apps.inference.postprocessing import softmax
from apps.inference.runtime import RuntimeConfig, load_model
from apps.optimization import evaluation, recipes

logger = logging.getLogger(__name__)

METHODS = ("minmax", "entropy", "percentile")
CANDIDATE_OPS = {"Conv", "Gemm", "MatMul"}
SENSITIVITY_ITEMS = 48  # a stride sample of the set: enough to rank nodes, cheap per probe
LATENCY_RUNS = 20

Calibration = Callable[[str], Callable[[], Iterator[dict[str, np.ndarray]]]]


class NoPassingCandidate(recipes.RecipeError):
    """The search ended (time box or nothing left to try) without a candidate that passes."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message, code="no_passing_candidate")
        self.report = report


@dataclass
class Trial:
    name: str
    method: str
    excluded: list[str] = field(default_factory=list)
    path: Path | None = None
    result: dict[str, Any] = field(default_factory=dict)
    passed: bool = False

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "method": self.method, "excluded": self.excluded, **self.result}


@dataclass
class Deadline:
    seconds: float
    started: float = field(default_factory=time.monotonic)

    def over(self) -> bool:
        return time.monotonic() - self.started >= self.seconds

    def spent(self) -> float:
        return round(time.monotonic() - self.started, 1)


@dataclass
class Search:
    source: Path
    model: Path  # the pre-processed source that every candidate quantizes
    work: Path
    prepared: evaluation.PreparedSet
    calibration: Calibration
    limit: float
    config: RuntimeConfig
    trials: list[Trial] = field(default_factory=list)
    fallback: Path | None = None  # the original model, if the quantizer refuses the pre-processed one

    def quantize(self, method: str, excluded: list[str], name: str) -> Path:
        try:
            return self._quantize(method, excluded, name)
        except Exception as exc:
            if self.fallback is None:
                raise
            # As static-int8 does: the pre-processing's rewrites can confuse the quantizer
            # (scikit-learn's ai.onnx.ml operators, say); go on with the original.
            logger.warning(
                "auto-int8: quantizing the pre-processed model failed (%s); using the original", exc
            )
            self.model, self.fallback = self.fallback, None
            for cache in self.work.glob("ranges-*.json"):
                cache.unlink()
            return self._quantize(method, excluded, name)

    def _quantize(self, method: str, excluded: list[str], name: str) -> Path:
        target = self.work / f"{name}.onnx"
        # One calibration per method, then read back from its cache by every later call.
        cache = self.work / f"ranges-{method}.json"
        calibration = None if cache.is_file() else self.calibration(method)
        recipes.quantize_qdq(
            self.model, target, calibration=calibration, method=method, exclude=excluded, cache=cache
        )
        return target

    def trial(self, method: str, excluded: list[str]) -> Trial:
        """Quantize, then measure against the source: size, latency and the gate."""
        name = f"{method}-float{len(excluded)}" if excluded else method
        trial = Trial(name=name, method=method, excluded=excluded)
        started = time.monotonic()
        try:
            trial.path = self.quantize(method, excluded, f"trial{len(self.trials)}")
            trial.result, trial.passed = self.measure(trial.path)
        except Exception as exc:  # one method the tools refuse must not end the search
            trial.result = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        trial.result["seconds"] = round(time.monotonic() - started, 1)
        self.trials.append(trial)
        logger.info("auto-int8 candidate %s: %s", name, trial.result)
        return trial

    def measure(self, path: Path) -> tuple[dict[str, Any], bool]:
        perf = evaluation.performance(
            {"source": self.source, "candidate": path},
            self.prepared.inputs[0],
            config=self.config,
            runs=LATENCY_RUNS,
        )
        accuracy = self.prepared.compare(load_model((0, path.name), path, self.config)).report()
        gate = evaluation.gate_verdict(accuracy, self.limit)
        source, candidate = perf["source"], perf["candidate"]
        return {
            "size_bytes": candidate["size_bytes"],
            "size_ratio": round(candidate["size_bytes"] / source["size_bytes"], 4),
            "latency_p50_ms": candidate["latency_p50_ms"],
            "source_latency_p50_ms": source["latency_p50_ms"],
            "latency_ratio_p50": round(candidate["latency_p50_ms"] / source["latency_p50_ms"], 3),
            "top1_agreement": accuracy["top1_agreement"],
            "top1_agreement_interval95": accuracy["top1_agreement_interval95"],
            "top1_drop": gate.get("top1_drop"),
            "passed": gate["passed"],
        }, gate["passed"]

    def output_error(self, path: Path, sample: list[int]) -> float:
        """Mean KL divergence of the candidate's softmax from the source's on `sample`."""
        model = load_model((0, path.name), path, self.config)
        total = 0.0
        for index in sample:
            p = softmax(self.prepared.source_outputs[index][0].astype(np.float64))
            row = evaluation.scores(model, model.run(self.prepared.inputs[index]), self.prepared.classes)
            q = softmax(row[0].astype(np.float64))
            total += float(np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12))))
        return total / len(sample)

    def sensitivity(self, method: str, deadline: Deadline) -> dict[str, Any]:
        """Each weighted node's effect on the output when it alone stays in float."""
        count = len(self.prepared.inputs)
        sample = sorted({int(i * count / SENSITIVITY_ITEMS) for i in range(min(SENSITIVITY_ITEMS, count))})
        baseline = self.output_error(self.quantize(method, [], "probe"), sample)
        scores: dict[str, float] = {}
        nodes = candidate_nodes(self.model)
        for node in nodes:
            if deadline.over():
                break
            scores[node] = round(
                baseline - self.output_error(self.quantize(method, [node], "probe"), sample), 6
            )
        return {
            "method": method,
            "items": len(sample),
            "baseline_kl": round(baseline, 6),
            "nodes": len(nodes),
            "measured": len(scores),
            "ranking": sorted(scores.items(), key=lambda pair: pair[1], reverse=True),
        }


def candidate_nodes(model: Path) -> list[str]:
    """The weighted nodes, in graph order: where int8 saves size and time, and where its
    rounding error enters."""
    graph = onnx.load(str(model), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type in CANDIDATE_OPS and node.name]


def named_nodes(model: Path, target: Path) -> Path:
    """The model with a name on every node: the quantizer leaves nodes in float by name."""
    proto = onnx.load(str(model))
    unnamed = [node for node in proto.graph.node if not node.name]
    if not unnamed:
        return model
    taken = {node.name for node in proto.graph.node}
    for index, node in enumerate(proto.graph.node):
        if not node.name:
            node.name = next(
                f"{node.op_type}_{index}_{n}"
                for n in range(len(taken) + 2)
                if f"{node.op_type}_{index}_{n}" not in taken
            )
            taken.add(node.name)
    onnx.save(proto, str(target))
    return target


def exclusion_counts(available: int) -> Iterator[int]:
    k = 1
    while k < available:
        yield k
        k *= 2
    if available:
        yield available


def auto_int8(
    source: Path,
    target: Path,
    *,
    prepared: evaluation.PreparedSet,
    calibration: Calibration,
    limit: float,
    budget_seconds: float,
    config: RuntimeConfig,
    methods: tuple[str, ...] = METHODS,
) -> dict[str, Any]:
    """Search, write the chosen model to `target` and return the search report;
    NoPassingCandidate (with the report) when nothing passed in the time box."""
    deadline = Deadline(budget_seconds)
    with tempfile.TemporaryDirectory(prefix="mlp-auto-int8-") as work:
        search = Search(source, source, Path(work), prepared, calibration, limit, config)
        if not deadline.over():
            search.fallback = named_nodes(source, Path(work) / "original.onnx")
            search.model = named_nodes(recipes.preprocessed(source, Path(work)), Path(work) / "named.onnx")
            if search.model == search.fallback:
                search.fallback = None
        report: dict[str, Any] = {"time_box_seconds": budget_seconds, "max_top1_drop": limit}
        stopped = _run(search, deadline, methods, report)
        report.update(
            stopped_by="time_box" if stopped else "done",
            seconds=deadline.spent(),
            trials=[trial.summary() for trial in search.trials],
        )
        chosen = _choose(search.trials)
        if chosen is None:
            raise NoPassingCandidate(_nothing_passed(search.trials, stopped, report), report)
        report["chosen"] = chosen.name
        assert chosen.path is not None
        shutil.copyfile(chosen.path, target)
    return report


def _nothing_passed(trials: list[Trial], stopped: bool, report: dict[str, Any]) -> str:
    reason = "its time box ended" if stopped else "every step was tried"
    refused = [trial.result["error"] for trial in trials if "error" in trial.result]
    return (
        f"auto-int8 found no candidate that passes the gate ({report['max_top1_drop']} points): {reason}"
        f" after {report['seconds']} s of {report['time_box_seconds']} s; {len(trials) - len(refused)}"
        f" candidates measured, {len(refused)} refused by the quantizer"
        + (f" ({refused[0]})." if refused else ".")
    )


def _run(search: Search, deadline: Deadline, methods: tuple[str, ...], report: dict[str, Any]) -> bool:
    """The three phases; True when the time box stopped them."""
    for method in methods:
        if deadline.over():
            return True
        if search.trial(method, []).passed:
            return False  # nothing left in float: no smaller or faster int8 model to find
    measured = [t for t in search.trials if t.result.get("top1_agreement") is not None]
    if not measured:
        return deadline.over()
    best = max(measured, key=lambda t: t.result["top1_agreement"]).method
    if deadline.over():
        return True
    report["sensitivity"] = search.sensitivity(best, deadline)
    ranking = [node for node, score in report["sensitivity"]["ranking"] if score > 0]
    return _exclude(search, deadline, best, ranking)


def _exclude(search: Search, deadline: Deadline, method: str, ranking: list[str]) -> bool:
    """Leave the k most sensitive nodes in float, k doubling until the gate passes, then
    bisect between the last k that failed and the first that passed."""
    failed, passed = 0, None
    for k in exclusion_counts(len(ranking)):
        if deadline.over():
            return True
        if search.trial(method, ranking[:k]).passed:
            passed = k
            break
        failed = k
    while passed is not None and passed - failed > 1:
        if deadline.over():
            return True
        middle = (failed + passed) // 2
        if search.trial(method, ranking[:middle]).passed:
            passed = middle
        else:
            failed = middle
    return False


def _choose(trials: list[Trial]) -> Trial | None:
    """The smallest passing candidate (to 1 % of the source's size), then the fastest."""
    passing = [t for t in trials if t.passed and t.path is not None]
    if not passing:
        return None
    return min(
        passing, key=lambda t: (math.floor(t.result["size_ratio"] * 100), t.result["latency_ratio_p50"])
    )
