"""The protocol's gRPC messages to and from apps/oip/protocol.py: the door's wire format only.

An input tensor comes as typed `contents` (the field of its datatype: fp32_contents for
FP32…) or as one entry of `raw_input_contents` (little-endian bytes, the BYTES elements
each behind a 4-byte length), the latter for every input or for none, as Triton requires.
Outputs always go back as `raw_output_contents`, as Triton sends them.
"""

from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from apps.oip.datatypes import BYTES, check_shape, element_count, input_from_raw, numpy_dtype, raw_bytes
from apps.oip.protocol import InferInput, InferRequest, InferResponse, RequestedOutput, bad_request

# The typed contents field that carries each datatype (FP16 and BF16 have none: raw only),
# and for the narrow integers the range their wider field must stay within.
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    BYTES: "bytes_contents",
}
_FIELDS = frozenset(_CONTENTS.values())
_WIDE = {"int_contents": np.int32, "uint_contents": np.uint32}
_MAX_NAME = 256


def infer_request(message: pb.ModelInferRequest) -> InferRequest:
    """The request a ModelInferRequest holds; 400 (INVALID_ARGUMENT) when it cannot be read."""
    raw = list(message.raw_input_contents)
    if raw and len(raw) != len(message.inputs):
        raise bad_request(
            f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs: "
            "give every input's data there, or none."
        )
    inputs = []
    for index, tensor in enumerate(message.inputs):
        name = _name(tensor.name, "input")
        shape = check_shape(name, list(tensor.shape))
        if raw:
            if _given_fields(tensor.contents):
                raise bad_request(f"Input '{name}' has contents as well as raw_input_contents.")
            inputs.append(input_from_raw(name, tensor.datatype, shape, raw[index]))
        else:
            inputs.append(_typed_input(name, tensor.datatype, shape, tensor.contents))
        inputs[-1].parameters = parameters(tensor.parameters)
    outputs = [
        RequestedOutput(_name(o.name, "output"), classification=_class_count(o)) for o in message.outputs
    ]
    return InferRequest(
        id=message.id, inputs=inputs, outputs=outputs, parameters=parameters(message.parameters)
    )


def _name(name: str, what: str) -> str:
    if not name or len(name) > _MAX_NAME:
        raise bad_request(f"Every {what} needs a name of at most {_MAX_NAME} characters.")
    return name


def _given_fields(contents: pb.InferTensorContents) -> list[str]:
    return [field.name for field, _ in contents.ListFields()]


def _typed_input(name: str, datatype: str, shape: list[int], contents: pb.InferTensorContents) -> InferInput:
    field = _CONTENTS.get(datatype)
    given = _given_fields(contents)
    if field is None:
        dtype = numpy_dtype(datatype)  # an unknown datatype: 400 with its name
        raise bad_request(f"Input '{name}': {datatype} ({dtype}) data goes in raw_input_contents.")
    if any(other != field for other in given):
        raise bad_request(
            f"Input '{name}' is {datatype}, whose data goes in contents.{field}; got {', '.join(given)}."
        )
    values = getattr(contents, field)
    count = element_count(shape)
    if len(values) != count:
        raise bad_request(
            f"Input '{name}': {len(values)} values in contents.{field} for shape {shape} ({count} expected)."
        )
    if datatype == BYTES:
        return InferInput(name, datatype, shape, elements=list(values))
    dtype = numpy_dtype(datatype)
    array = np.fromiter(values, dtype=_WIDE.get(field, dtype), count=count)  # faster than np.array here
    if array.dtype != dtype:
        limits = np.iinfo(dtype)
        if array.size and (array.min() < limits.min or array.max() > limits.max):
            raise bad_request(f"Input '{name}': a value is out of the range of {datatype}.")
        array = array.astype(dtype)
    return InferInput(name, datatype, shape, array=array.reshape(shape))


def _class_count(output: pb.ModelInferRequest.InferRequestedOutputTensor) -> int:
    """The classification extension: `parameters["classification"]` as an int64 (tritonclient's
    InferRequestedOutput(name, class_count=k))."""
    value = parameters(output.parameters).get("classification", 0)
    if type(value) is not int or value < 0:
        raise bad_request(f"Output '{output.name}': classification must be a whole count.")
    return value


def parameters(params: Any) -> dict[str, Any]:
    """A protocol parameter map as plain values (the one field of each InferParameter)."""
    values = {}
    for key, param in params.items():
        which = param.WhichOneof("parameter_choice")
        values[key] = getattr(param, which) if which else None
    return values


def infer_response(response: InferResponse) -> pb.ModelInferResponse:
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    for tensor in response.outputs:
        message.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        message.raw_output_contents.append(raw_bytes(tensor))
    return message


def model_metadata(metadata: dict[str, Any]) -> pb.ModelMetadataResponse:
    return pb.ModelMetadataResponse(
        name=metadata["name"],
        versions=metadata["versions"],
        platform=metadata["platform"],
        inputs=[_tensor_metadata(t) for t in metadata["inputs"]],
        outputs=[_tensor_metadata(t) for t in metadata["outputs"]],
    )


def _tensor_metadata(tensor: dict[str, Any]) -> pb.ModelMetadataResponse.TensorMetadata:
    shape = [dim if isinstance(dim, int) and dim >= 0 else -1 for dim in tensor["shape"]]
    return pb.ModelMetadataResponse.TensorMetadata(
        name=tensor["name"], datatype=tensor["datatype"], shape=shape
    )
