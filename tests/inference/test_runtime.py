"""The session cache, without Django: single-flight loading, LRU bounds, warm-up."""

import threading
from pathlib import Path

import numpy as np
import pytest

from apps.inference.runtime import RuntimeConfig, SessionCache
from tests import onnx_models


def model_file(tmp_path: Path, seed: int) -> Path:
    path = tmp_path / f"m{seed}.onnx"
    path.write_bytes(onnx_models.tiny_classifier(seed=seed))
    return path


def test_many_first_requests_load_the_model_once(tmp_path):
    cache = SessionCache(max_models=4, max_bytes=10**9, config=RuntimeConfig())
    path = model_file(tmp_path, 1)
    barrier = threading.Barrier(8)
    results = []

    def request() -> None:
        barrier.wait()
        results.append(cache.get((1, ""), lambda: path))

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.loads == 1
    assert len({id(r) for r in results}) == 1


def test_it_evicts_the_least_recently_used_beyond_the_count(tmp_path):
    cache = SessionCache(max_models=2, max_bytes=10**9, config=RuntimeConfig())
    for seed in (1, 2):
        cache.get((seed, ""), model_file(tmp_path, seed))
    cache.get((1, ""), model_file(tmp_path, 1))  # 1 becomes most recent
    cache.get((3, ""), model_file(tmp_path, 3))
    assert cache.keys() == [(1, ""), (3, "")]


def test_it_evicts_beyond_the_byte_budget_but_keeps_one(tmp_path):
    size = model_file(tmp_path, 1).stat().st_size
    cache = SessionCache(max_models=10, max_bytes=size + 10, config=RuntimeConfig())
    cache.get((1, ""), model_file(tmp_path, 1))
    cache.get((2, ""), model_file(tmp_path, 2))
    assert cache.keys() == [(2, "")]
    tiny = SessionCache(max_models=10, max_bytes=1, config=RuntimeConfig())
    tiny.get((1, ""), model_file(tmp_path, 1))
    assert tiny.keys() == [(1, "")]  # a model larger than the budget still serves


def test_a_failed_load_is_not_cached_and_waiters_are_released(tmp_path):
    cache = SessionCache(max_models=2, max_bytes=10**9, config=RuntimeConfig())
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"junk")
    for _ in range(2):
        with pytest.raises(Exception):  # noqa: B017 (ONNX Runtime raises its own error types)
            cache.get((9, ""), bad)
    assert cache.keys() == []
    assert cache.get((9, ""), model_file(tmp_path, 1)).run({"input": np.zeros((1, 3, 8, 8), np.float32)})


def test_unknown_providers_fall_back_to_the_cpu():
    config = RuntimeConfig(providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    assert config.available_providers()[-1] == "CPUExecutionProvider"


def test_requests_that_waited_for_a_failed_load_fail_with_it(tmp_path, monkeypatch):
    """Eight first requests for a broken model: one load attempt, eight errors, not eight
    attempts one after another (a slow-failing large model would time the workers out)."""
    from apps.inference import runtime

    cache = SessionCache(max_models=2, max_bytes=10**9, config=RuntimeConfig())
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"junk")
    attempts, load = [], runtime.load_model
    started = threading.Event()

    def slow_load(*args, **kwargs):
        attempts.append(1)
        started.set()
        release.wait(timeout=10)
        return load(*args, **kwargs)

    release = threading.Event()
    monkeypatch.setattr(runtime, "load_model", slow_load)
    errors = []

    def request() -> None:
        try:
            cache.get((9, ""), bad)
        except Exception as exc:  # ONNX Runtime raises its own error types
            errors.append(exc)

    first = threading.Thread(target=request)
    first.start()
    assert started.wait(timeout=10)  # the first request is loading
    waiting = threading.Semaphore(0)

    class CountedEvent(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waiting.release()
            return super().wait(timeout)

    cache._loading[(9, "")].done = CountedEvent()  # to know when the others wait for it
    others = [threading.Thread(target=request) for _ in range(7)]
    for thread in others:
        thread.start()
    for _ in others:
        assert waiting.acquire(timeout=10)
    release.set()
    for thread in [first, *others]:
        thread.join(timeout=10)
    assert len(errors) == 8
    assert len(attempts) == 1


def test_integer_input_models_are_warmed_up_too(tmp_path, monkeypatch):
    from onnx import TensorProto, helper

    from apps.inference import runtime

    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)],
        "uint8_input",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "uint8.onnx"
    path.write_bytes(model.SerializeToString())
    runs = []
    run = runtime.ort.InferenceSession.run
    monkeypatch.setattr(
        runtime.ort.InferenceSession, "run", lambda self, *a, **k: runs.append(1) or run(self, *a, **k)
    )
    runtime.load_model((1, ""), path, RuntimeConfig())
    assert runs == [1]


def test_first_concurrent_callers_share_one_inference_semaphore(monkeypatch):
    import threading
    import time

    from apps.inference import inferring as services

    made, real = [], threading.BoundedSemaphore

    def slow_semaphore(value):  # widens the window between the check and the assignment
        time.sleep(0.05)
        made.append(real(value))
        return made[-1]

    monkeypatch.setattr(services, "_inference_slots", None)
    monkeypatch.setattr(services.threading, "BoundedSemaphore", slow_semaphore)
    got = []
    threads = [threading.Thread(target=lambda: got.append(services.inference_slots())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1
    assert all(slots is made[0] for slots in got)


def test_a_file_that_is_not_the_recorded_one_is_refused(tmp_path):
    import hashlib

    from apps.inference.runtime import ModelFileMismatch

    path = model_file(tmp_path, 1)
    recorded = hashlib.sha256(path.read_bytes()).hexdigest()
    cache = SessionCache(max_models=2, max_bytes=10**9, config=RuntimeConfig())
    assert cache.get((1, recorded), path).input_names == ["input"]
    path.write_bytes(onnx_models.tiny_classifier(seed=2))  # replaced on disk
    with pytest.raises(ModelFileMismatch):
        cache.get((2, recorded), path)
    assert cache.keys() == [(1, recorded)]
