"""Running the model on prepared tensors, under the process's inference slots. No ORM imports."""

import threading

import numpy as np
from django.conf import settings
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from apps.core.exceptions import UnprocessableInput
from apps.inference import runtime

_ORT_RUN_ERRORS = tuple(
    getattr(ort_errors, name)
    for name in ("Fail", "InvalidArgument", "RuntimeException", "InvalidGraph", "NotImplemented")
    if hasattr(ort_errors, name)
)
_inference_slots: threading.BoundedSemaphore | None = None
_inference_slots_lock = threading.Lock()


def inference_slots() -> threading.BoundedSemaphore:
    """How many model calls may run at once in this process (INFERENCE_CONCURRENCY).

    With threaded web workers, two requests in one process would otherwise run
    ONNX Runtime side by side on the same cores, which is slower than one after
    the other (docs/decisions/0007-application-server.md). The other threads
    still decode, preprocess and talk to the database meanwhile: ONNX Runtime
    releases the GIL while it runs.
    """
    global _inference_slots
    if _inference_slots is None:
        with _inference_slots_lock:  # two first requests at once must share one semaphore
            if _inference_slots is None:
                _inference_slots = threading.BoundedSemaphore(settings.INFERENCE_CONCURRENCY)
    return _inference_slots


def infer(
    loaded: runtime.LoadedModel, feeds: dict[str, np.ndarray], *, batched: bool, dynamic: bool
) -> dict[str, np.ndarray]:
    """The model's outputs for `feeds`. A batch for a model with a fixed batch of 1 runs
    one call per input, outputs stacked. 422 inference_failed when the model cannot
    compute on these inputs (tensors that do not broadcast): the input's fault, not the
    server's; loading errors happen earlier, in the session cache."""
    with inference_slots():
        try:
            if batched and not dynamic and next(iter(feeds.values())).shape[0] > 1:
                name, batch = next(iter(feeds.items()))
                runs = [loaded.run({name: batch[i : i + 1]}) for i in range(batch.shape[0])]
                return {key: np.concatenate([r[key] for r in runs]) for key in runs[0]}
            return loaded.run(feeds)
        except _ORT_RUN_ERRORS as exc:
            raise UnprocessableInput(f"The model refused the input: {exc}", code="inference_failed") from exc
