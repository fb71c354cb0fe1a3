"""The Open Inference Protocol's inference request and response, free of any wire format:
the REST door (apps/oip/rest.py) and the gRPC door (apps/oip/grpc/) translate to and from
these, and apps/oip/services.py answers them with the one prediction pipeline."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from apps.core.exceptions import InvalidInput


@dataclass
class InferInput:
    """One input tensor: numbers in `array`, or the elements of a BYTES tensor."""

    name: str
    datatype: str
    shape: list[int]
    array: np.ndarray | None = None
    elements: list[bytes] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None = None  # REST: return this output as binary data (None: the request's default)
    classification: int = 0  # the classification extension: the top k as "score:index:label"


@dataclass
class InferRequest:
    id: str = ""
    inputs: list[InferInput] = field(default_factory=list)
    outputs: list[RequestedOutput] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class OutputTensor:
    name: str
    datatype: str
    shape: list[int]
    array: np.ndarray | None = None
    elements: list[bytes] | None = None
    binary: bool | None = None


@dataclass
class InferResponse:
    model_name: str
    model_version: str
    id: str = ""
    outputs: list[OutputTensor] = field(default_factory=list)


def bad_request(message: str, **details: Any) -> InvalidInput:
    """A request the protocol cannot read: 400 on REST, INVALID_ARGUMENT on gRPC."""
    return InvalidInput(message, code="invalid_inference_request", details=details)
