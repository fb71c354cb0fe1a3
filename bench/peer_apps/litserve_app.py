"""LitServe serving the demo model: POST /predict {"image": "<base64 JPEG>"}; 2 workers x 1
thread, adaptive batching (8 / 10 ms), as the peers table in ../shared/PERFORMANCE.md ran it.
Started by bench/peers.py inside its own virtual environment: python litserve_app.py PORT"""

import base64
import sys

import litserve as ls
from model import Classifier


class Api(ls.LitAPI):
    def setup(self, device) -> None:
        self.model = Classifier()

    def decode_request(self, request):
        return base64.b64decode(request["image"])

    def predict(self, images):
        return self.model.top5(list(images))

    def encode_response(self, output):
        return {"top_k": output}


if __name__ == "__main__":
    api = Api(max_batch_size=8, batch_timeout=0.01)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=2, devices=1, timeout=30)
    server.run(port=int(sys.argv[1]), generate_client_file=False)
