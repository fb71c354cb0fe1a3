"""MLServer custom runtime serving the demo model over the Open Inference Protocol: one BYTES
input "image" holding a base64 JPEG per item, output "top_k" (JSON strings). Adaptive
batching and parallel workers come from bench/peers.py's settings.json and
model-settings.json."""

import base64
import json

from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput
from model import Classifier


class DemoClassifier(MLModel):
    async def load(self) -> bool:
        self.model = Classifier()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        images = []
        for item in payload.inputs[0].data:
            images.append(base64.b64decode(item))  # str or bytes, as the JSON decoder left it
        rows = [json.dumps(r) for r in self.model.top5(images)]
        output = ResponseOutput(name="top_k", shape=[len(rows), 1], datatype="BYTES", data=rows)
        return InferenceResponse(model_name=self.name, outputs=[output])
