"""A bare WSGI prediction app, for bench/ceiling.py: what any Python WSGI server could reach.

It does the model work the platform does (decode, preprocess, ONNX Runtime, top-5 with
softmax, a JSON answer) and nothing else: no authentication, no throttle, no quota, no
framework. With BARE_DSN set, it also commits one audit row per request to PostgreSQL
(autocommit, a durable commit, as the platform's is) before answering.

    cd bench && gunicorn bare_app:application --workers 2 --worker-class sync
"""

import gc
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.inference.postprocessing import top_k  # noqa: E402
from apps.inference.preprocessing import decode_image, image_to_array  # noqa: E402
from apps.inference.runtime import RuntimeConfig, load_model  # noqa: E402

DEMO = ROOT / "demo" / "efficientnet_lite0"
PREPROCESSING = json.loads((DEMO / "preprocessing.json").read_text())
LABELS = (DEMO / "labels.txt").read_text().splitlines()
MODEL = load_model((0, ""), DEMO / "model.onnx", RuntimeConfig(intra_op_threads=1))
INPUT = MODEL.input_names[0]
INSERT = "INSERT INTO bare_audit (digest, output) VALUES (%s, %s)"

_connection: Any = None
if os.environ.get("BARE_DSN"):
    import psycopg

    _connection = psycopg.connect(os.environ["BARE_DSN"], autocommit=True)
gc.collect()
gc.freeze()  # as the platform's workers do


def application(environ: dict, start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    decoded = decode_image(body, max_pixels=40_000_000)
    outputs = MODEL.run({INPUT: image_to_array(decoded.image, PREPROCESSING)[None]})
    rows = top_k(outputs[MODEL.output_names[0]], LABELS, 5, apply_softmax=PREPROCESSING.get("softmax", False))
    answer = json.dumps({"predictions": [{"top_k": row} for row in rows]})
    if _connection is not None:
        _connection.execute(INSERT, (hashlib.sha256(body).hexdigest(), answer), prepare=True)
    data = answer.encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
