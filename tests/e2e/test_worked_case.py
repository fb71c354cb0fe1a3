"""The brief's worked case end to end, on a real gunicorn and a real Celery worker consuming
the `conversion` queue: a small Keras CNN trained here on scikit-learn's digits, saved with
tf.saved_model.save, uploaded as a SavedModel zip, converted (in the worker's sandboxed
child process), validated, quantized to int8, put behind `production` and predicted; the
same with a torch.jit.trace'd module uploaded as TorchScript.

Needs the converter extras (requirements-extras.txt, installed in CI). The models are tiny
and train for a few epochs: the point is the path, not the accuracy. The parity figures
(max |ONNX - original|) are printed (pytest -s) for the bench note.
"""

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from tests import live
from tests.live import wait_for
from tests.registry import intake_models

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
pytest.importorskip("torch")

pytestmark = pytest.mark.e2e

LABELS = [str(digit) for digit in range(10)]


@pytest.fixture(scope="module")
def stack(e2e_dir: Path, database_url: str) -> Iterator[dict]:
    """One gunicorn and one Celery worker consuming validation, default and conversion."""
    env = live.production_env(
        e2e_dir, database_url, "e2e", VALIDATION_LATENCY_RUNS="10", VALIDATION_THROUGHPUT_RUNS="2"
    )
    live.migrate(env)
    live.collectstatic(env)
    live.create_users(env, ["e2e"], "e2e-password", superuser=True)
    web = live.start_web(env, e2e_dir / "web.log", timeout=120)
    worker = live.start_worker(env, e2e_dir / "worker.log", "validation,default,conversion")
    try:
        web.wait_ready("the web server")
        yield {"url": web.url, "http": login(web.url), "logs": e2e_dir}
    finally:
        live.stop(web, worker)


def login(url: str) -> requests.Session:
    """A session with a JWT. A minute's patience: the first request of a fresh gunicorn worker
    on a busy CI machine (password hashing included) can take longer than test_stack allows."""
    return live.login(url, timeout=60)


@pytest.fixture(scope="module")
def digits() -> dict:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)  # 8x8, scaled to [0, 1]
    x_train, x_test, y_train, y_test = train_test_split(
        images, data.target, test_size=0.25, random_state=0, stratify=data.target
    )
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def keras_trained(digits: dict):
    model = intake_models.keras_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(digits["x_train"][..., None], digits["y_train"], epochs=8, batch_size=32, verbose=0)
    return model


def torch_trained(digits: dict):
    import torch

    module = intake_models.torch_cnn().train()
    x = torch.from_numpy(digits["x_train"][:, None])
    y = torch.from_numpy(digits["y_train"]).long()
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    for _ in range(8):
        for start in range(0, len(x), 64):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(module(x[start : start + 64]), y[start : start + 64])
            loss.backward()
            optimizer.step()
    return module.eval()


def wait_for_version(http: requests.Session, url: str, timeout: float = 300) -> dict:
    def finished() -> dict | None:
        body = http.get(url, timeout=30).json()
        return body if body["status"] in ("ready", "failed") else None

    return wait_for(finished, timeout, f"{url} to be converted and validated", interval=1)


def upload(stack: dict, name: str, filename: str, content: bytes, **fields) -> dict:
    """Create the model, upload the file with its labels; the version once ready."""
    url, http = stack["url"], stack["http"]
    created = http.post(f"{url}/api/v1/models/", json={"name": name, "task": "tensor"}, timeout=30)
    assert created.status_code == 201, created.text
    files = {"file": (filename, content), "labels": ("labels.txt", "\n".join(LABELS).encode())}
    response = http.post(f"{url}/api/v1/models/{name}/versions/", files=files, data=fields, timeout=60)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "converting"
    version = wait_for_version(http, f"{url}/api/v1/models/{name}/versions/1/")
    assert version["status"] == "ready", (version["failure_code"], version["status_reason"])
    return version


def quantize(stack: dict, name: str, input_name: str, digits: dict, layout) -> tuple[dict, str]:
    """An evaluation set of the held-out digits, then auto-int8 if it has landed, else static int8."""
    from apps.optimization import recipes

    url, http = stack["url"], stack["http"]
    lines = [
        json.dumps({"inputs": {input_name: layout(image[None]).tolist()}, "label": str(label)})
        for image, label in zip(digits["x_test"][:150], digits["y_test"][:150], strict=True)
    ]
    files = {"file": ("test.jsonl", "\n".join(lines).encode())}
    response = http.post(f"{url}/api/v1/models/{name}/evaluation-sets/", files=files, data={"name": "test"})
    assert response.status_code == 201, response.text
    recipe = "auto-int8" if "auto-int8" in recipes.RECIPES else "static-int8"
    body = {"recipe": recipe, "evaluation_set": "test", "calibration_set": "test"}
    if recipe == "auto-int8":
        body["time_budget_seconds"] = 120
    response = http.post(f"{url}/api/v1/models/{name}/versions/1/optimize", json=body, timeout=30)
    assert response.status_code == 202, response.text
    run_url = f"{url}{response.headers['Location']}"

    def finished() -> dict | None:
        run = http.get(run_url, timeout=30).json()
        return run if run["status"] in ("succeeded", "failed") else None

    run = wait_for(finished, 400, f"the {recipe} run", interval=1)
    assert run["status"] == "succeeded", run
    return run, recipe


def serve_and_predict(stack: dict, name: str, number: int, input_name: str, images: np.ndarray) -> list[dict]:
    url, http = stack["url"], stack["http"]
    response = http.put(
        f"{url}/api/v1/models/{name}/aliases/production", json={"version": number}, timeout=10
    )
    assert response.status_code == 200, response.text
    answers = []
    for image in images:
        response = http.post(
            f"{url}/api/v1/models/{name}/predict",
            json={"inputs": {input_name: image[None].tolist()}},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers


def check_case(stack: dict, name: str, version: dict, digits: dict, layout, expected: np.ndarray) -> None:
    parity = version["converted_from"]["parity"]
    assert parity["max_abs_diff"] <= 1e-4
    print(f"\n{name}: parity max abs diff {parity['max_abs_diff']:.3g} ({len(parity['checks'])} checks)")
    input_name = version["signature"]["inputs"][0]["name"]
    run, recipe = quantize(stack, name, input_name, digits, layout)
    report = run["report"]
    print(f"{name}: {recipe} -> v{run['result_version']}, gate {report.get('gate', {}).get('passed')}")
    answers = serve_and_predict(stack, name, run["result_version"], input_name, layout(digits["x_test"][:20]))
    assert all(answer["version"] == run["result_version"] for answer in answers)
    outputs = [answer["predictions"][0]["outputs"] for answer in answers]
    predicted = [int(np.argmax(next(iter(output.values()))["data"])) for output in outputs]
    agreement = np.mean(np.array(predicted) == expected[:20])
    print(f"{name}: int8 behind production agrees with the framework on {agreement:.0%} of 20 digits")
    assert agreement >= 0.9


def test_a_keras_cnn_saved_as_a_savedmodel_goes_from_upload_to_a_prediction(
    stack: dict, digits: dict, tmp_path
):
    import tensorflow as tf

    model = keras_trained(digits)
    folder = tmp_path / "digits_cnn"
    tf.saved_model.save(model, str(folder))
    version = upload(stack, "digits-keras", "digits_cnn.zip", intake_models.zip_folder(folder))
    assert version["converted_from"]["format"] == "savedmodel"
    expected = np.argmax(model.predict(digits["x_test"][:20, ..., None], verbose=0), axis=1)
    check_case(stack, "digits-keras", version, digits, lambda x: x[..., None], expected)


def test_a_traced_torch_module_goes_from_upload_to_a_prediction(stack: dict, digits: dict, tmp_path):
    import torch

    module = torch_trained(digits)
    content = intake_models.torchscript_file(tmp_path, module)
    signature = json.dumps([{"name": "image", "dtype": "float32", "shape": [-1, 1, 8, 8]}])
    version = upload(stack, "digits-torch", "digits_cnn.pt", content, input_signature=signature)
    assert version["converted_from"]["converter"]["exporter"] == "torchscript (dynamo=False)"
    with torch.no_grad():
        expected = module(torch.from_numpy(digits["x_test"][:20, None])).argmax(1).numpy()
    check_case(stack, "digits-torch", version, digits, lambda x: x[:, None], expected)
