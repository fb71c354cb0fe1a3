"""The work every peer server does per image, the same as the platform's limit measures:
decode + preprocess with the platform's own functions (apps/inference/preprocessing.py,
numpy and Pillow only), then ONNX Runtime on 1 intra-op thread without spinning, and the
top 5 classes. Imported by the peers' servers inside their own virtual environments."""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DEMO = ROOT / "demo" / "efficientnet_lite0"

from apps.inference.preprocessing import decode_image, image_to_array  # noqa: E402


class Classifier:
    def __init__(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(DEMO / "model.onnx"), sess_options=options)
        self.input = self.session.get_inputs()[0].name
        self.config = json.loads((DEMO / "preprocessing.json").read_text())
        self.labels = (DEMO / "labels.txt").read_text().splitlines()

    def arrays(self, images: list[bytes]) -> np.ndarray:
        return np.stack(
            [image_to_array(decode_image(d, max_pixels=40_000_000).image, self.config) for d in images]
        )

    def top5(self, images: list[bytes]) -> list[list[dict]]:
        logits = self.session.run(None, {self.input: self.arrays(images)})[0]
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = exp / exp.sum(axis=1, keepdims=True)
        return [
            [{"label": self.labels[i], "score": float(row[i])} for i in np.argsort(row)[::-1][:5]]
            for row in probs
        ]
