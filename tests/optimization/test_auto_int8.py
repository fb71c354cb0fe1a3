"""auto-int8: the accuracy-aware search, through the API, the command and on its own."""

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from onnx import TensorProto, helper, numpy_helper

from apps.inference.runtime import RuntimeConfig, load_model
from apps.optimization import evaluation, recipes, search
from apps.registry.models import ModelVersion
from tests.factories import MLModelFactory
from tests.inference.conftest import ready_version
from tests.optimization.test_optimize import labelled_zip, optimize, run, upload_set

DEMO = Path(__file__).resolve().parents[2] / "demo" / "efficientnet_lite0"


@pytest.mark.django_db
def test_auto_int8_finds_a_passing_candidate_and_records_its_search(api, tiny_version):
    assert upload_set(api, labelled_zip(api)).status_code == 201
    done = run(api, optimize(api, {"recipe": "auto-int8", "evaluation_set": "eval"}))
    assert done["status"] == "succeeded", done["error"]
    searched = done["report"]["search"]
    assert searched["stopped_by"] == "done" and searched["time_box_seconds"] == 900
    assert searched["trials"], "the search records what it tried"
    for trial in searched["trials"]:
        assert trial["method"] in search.METHODS
        assert trial["size_bytes"] > 0 and trial["latency_p50_ms"] > 0
        low, high = trial["top1_agreement_interval95"]
        assert low <= trial["top1_agreement"] <= high
    chosen = next(t for t in searched["trials"] if t["name"] == searched["chosen"])
    assert chosen["passed"]
    version = ModelVersion.objects.get(model__name="tiny", number=2)
    assert (version.status, version.derived_from.number) == ("ready", 1)
    assert version.optimization["search"] == searched
    assert version.optimization["gate"]["passed"]


@pytest.mark.django_db
def test_the_report_gives_the_agreement_with_its_95_percent_interval(api, tiny_version):
    assert upload_set(api, labelled_zip(api)).status_code == 201
    report = run(api, optimize(api, {"recipe": "auto-int8", "evaluation_set": "eval"}))["report"]
    accuracy = report["accuracy"]
    low, high = accuracy["top1_agreement_interval95"]
    assert low <= accuracy["top1_agreement"] <= high < 100.01
    low, high = accuracy["result"]["top1_interval95"]
    assert low <= accuracy["result"]["top1"] <= high
    assert "95% interval" in report["gate"]["reason"]


def test_the_wilson_interval_stays_honest_at_the_edges():
    assert evaluation.wilson(0, 0) is None
    low, high = evaluation.wilson(10, 10)  # 10 of 10 is not "certainly 100 %"
    assert (low, high) == (72.25, 100.0)
    low, high = evaluation.wilson(212, 214)
    assert 96.6 < low < 96.7 and 99.7 < high < 99.8


@pytest.mark.django_db
def test_a_tiny_time_box_ends_the_search_with_a_clear_failure(api, tiny_version):
    assert upload_set(api, labelled_zip(api)).status_code == 201
    body = {"recipe": "auto-int8", "evaluation_set": "eval", "time_budget_seconds": 0}
    done = run(api, optimize(api, body))
    assert done["status"] == "failed"
    assert done["error"]["code"] == "no_passing_candidate"
    assert "time box ended" in done["error"]["message"]
    assert done["report"]["search"]["stopped_by"] == "time_box"
    assert done["report"]["search"]["trials"] == []
    assert done["result_version"] is None
    assert not ModelVersion.objects.filter(model__name="tiny", number=2).exists()


@pytest.mark.django_db
def test_auto_int8_without_an_evaluation_set_is_400(api, tiny_version):
    assert upload_set(api, labelled_zip(api)).status_code == 201
    response = optimize(api, {"recipe": "auto-int8", "calibration_set": "eval"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "evaluation_set_required"
    response = optimize(api, {"recipe": "auto-int8", "evaluation_set": "eval", "time_budget_seconds": -1})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_input")


@pytest.mark.django_db
def test_the_optimize_command_prints_the_search(api, tiny_version):
    assert upload_set(api, labelled_zip(api)).status_code == 201
    out = io.StringIO()
    call_command("optimize", "--model", "tiny", "--number", "1", "--recipe", "auto-int8",
                 "--evaluation-set", "eval", stdout=out)  # fmt: skip
    text = out.getvalue()
    assert "auto-int8 search:" in text and "chosen: minmax" in text
    assert re.search(r"top-1 agreement with the source: [\d.]+ % of 10 items \(95% interval", text)


def outlier_model(path: Path) -> None:
    """Pooled colours [f0, f1, f2] → MatMul `spread` → [f0, f1, f2, 0] → MatMul `pick` →
    logits f0, f1, f2. Each of `pick`'s weight columns holds a 1 and a 1000 (on the
    always-zero feature): 8-bit weights at that column's scale round the 1 to 0, so every
    logit is 0. Only `pick` left in float keeps the answers: a model that needs exactly one
    node excluded, and the right one."""
    spread = np.hstack([np.eye(3), np.zeros((3, 1))]).astype(np.float32)
    pick = np.vstack([np.eye(3), np.full((1, 3), 1000.0)]).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"], name="pool"),
            helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
            helper.make_node("MatMul", ["flat", "spread_w"], ["wide"], name="spread"),
            helper.make_node("MatMul", ["wide", "pick_w"], ["logits"], name="pick"),
        ],
        "outlier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(spread, "spread_w"), numpy_helper.from_array(pick, "pick_w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


def test_the_search_leaves_the_most_sensitive_node_in_float_until_the_gate_passes(tmp_path):
    source = tmp_path / "source.onnx"
    outlier_model(source)
    rng = np.random.default_rng(0)
    inputs = []
    for index in range(60):  # each item's colour leans clearly to one class
        array = rng.normal(0, 0.05, (1, 3, 8, 8)).astype(np.float32)
        array[0, index % 3] += 0.5
        inputs.append({"input": array})
    config = RuntimeConfig(intra_op_threads=1)
    model = load_model((0, "s"), source, config)
    prepared = evaluation.PreparedSet([], [], [], [], 3)
    for feeds in inputs:
        row = model.run(feeds)["logits"]
        prepared.inputs.append(feeds)
        prepared.truths.append(int(row[0].argmax()))
        prepared.source_outputs.append(row)
        prepared.source_ranked.append(np.argsort(row[0])[::-1][:5].tolist())
    target = tmp_path / "chosen.onnx"
    report = search.auto_int8(
        source, target, prepared=prepared, calibration=lambda method: lambda: iter(inputs),
        limit=1.0, budget_seconds=600, config=config, methods=("minmax",),
    )  # fmt: skip
    first = report["trials"][0]
    assert (first["name"], first["passed"]) == ("minmax", False)
    assert report["sensitivity"]["ranking"][0][0] == "pick"
    assert report["sensitivity"]["measured"] == 2
    chosen = next(t for t in report["trials"] if t["name"] == report["chosen"])
    assert chosen["excluded"] == ["pick"] and chosen["passed"] and chosen["top1_agreement"] == 100.0
    assert target.is_file()


def test_the_demo_evaluation_set_has_200_inputs_and_states_its_distinct_photos():
    with zipfile.ZipFile(DEMO / "eval-set.zip") as archive:
        names = [n for n in archive.namelist() if n.endswith(".jpg")]
        largest = max(info.file_size for info in archive.infolist())
    assert len(names) >= 200
    labels = set((DEMO / "labels.txt").read_text().splitlines())
    assert {name.split("/")[0] for name in names} <= labels
    photos = {Path(name).stem.split("-")[0] for name in names}
    manifest = (DEMO / "eval-set.md").read_text()
    assert f"**Items: {len(names)}**" in manifest
    stated = int(re.search(r"\*\*Distinct photos: (\d+)\*\*", manifest).group(1))
    assert stated == len(photos) and stated < len(names) / 10  # views, not independent photos
    # The repository stays lean: small JPEGs, a few MB in all.
    assert largest < 64_000 and (DEMO / "eval-set.zip").stat().st_size < 4_000_000
    assert json.loads((DEMO / "preprocessing.json").read_text())["crop"] == 224


@pytest.mark.django_db
def test_a_model_whose_pre_processed_graph_the_quantizer_refuses_is_searched_as_it_is(api, user):
    """The digits demo (scikit-learn's ai.onnx.ml operators): quant_pre_process's output
    trips the quantizer, so the search goes on with the original model, as static-int8 does."""
    digits = DEMO.parent / "digits"
    model = MLModelFactory(name="digits", owner=user, task="tensor")
    labels = (digits / "labels.txt").read_text().split()
    ready_version(
        model, (digits / "model.onnx").read_bytes(), labels=labels, preprocessing={"non_finite": "reject"}
    )
    lines = (digits / "test.jsonl").read_bytes().splitlines()[:120]
    assert upload_set(api, b"\n".join(lines), filename="set.jsonl", model="digits").status_code == 201
    done = run(api, optimize(api, {"recipe": "auto-int8", "evaluation_set": "eval"}, model="digits"))
    assert done["status"] == "succeeded", done["error"]
    assert done["report"]["search"]["chosen"] == "minmax"
    assert "error" not in done["report"]["search"]["trials"][0]


def test_minmax_calibration_reads_every_input(tmp_path):
    """The ranges cover the first of 32 inputs too (ONNX Runtime's intermediate-output cap
    dropped every full batch of 16 unmerged: 32 inputs calibrated on none)."""
    source = tmp_path / "source.onnx"
    outlier_model(source)
    inputs = [{"input": np.zeros((1, 3, 8, 8), np.float32)} for _ in range(32)]
    inputs[0]["input"][0, 1] = 7.0  # only the first input reaches 7 on the pooled green
    cache = tmp_path / "ranges.json"
    recipes.quantize_qdq(source, tmp_path / "q.onnx", calibration=lambda: iter(inputs), cache=cache)
    pooled = json.loads(cache.read_text())["data"]["pooled"]
    assert (pooled["lowest"]["data"], pooled["highest"]["data"]) == ([0.0], [7.0])
