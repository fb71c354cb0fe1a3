"""The protocol's tensor datatypes (FP32, INT64, BYTES, …) against NumPy and ONNX types, and
tensors as raw little-endian bytes (the REST binary extension, gRPC's raw contents)."""

import struct

import numpy as np

from apps.oip.protocol import InferInput, OutputTensor, bad_request

BYTES = "BYTES"
_NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
# ONNX type names, as a version's signature records them (apps/registry/validation.py).
_ONNX = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float": "FP32",
    "float32": "FP32",
    "double": "FP64",
    "float64": "FP64",
    "string": BYTES,
    "bfloat16": "BF16",
}


def numpy_dtype(datatype: str) -> np.dtype:
    """The NumPy type of a numeric datatype; 400 for BYTES' callers to handle, or unknown names."""
    try:
        return np.dtype(_NUMPY[datatype])
    except (KeyError, TypeError):
        raise bad_request(f"Unsupported datatype {str(datatype)[:32]!r}.") from None


def oip_datatype(dtype: str | np.dtype) -> str:
    """The protocol's name for an ONNX type name ("float") or a NumPy dtype."""
    if isinstance(dtype, str) and dtype in _ONNX:
        return _ONNX[dtype]
    name = np.dtype(dtype).name
    if np.dtype(dtype).kind in "OSU":
        return BYTES
    return _ONNX.get(name, name.upper())


def element_count(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def check_shape(name: str, shape: object) -> list[int]:
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape) or len(shape) > 16:
        raise bad_request(f"Input '{name}': shape must be a list of non-negative integers.")
    return shape


def input_from_raw(name: str, datatype: str, shape: list[int], raw: bytes) -> InferInput:
    """An input tensor from its raw bytes: little-endian numbers, or for BYTES each element
    as a 4-byte little-endian length and its bytes. 400 when the bytes do not fit the shape."""
    shape = check_shape(name, shape)
    count = element_count(shape)
    if datatype == BYTES:
        return InferInput(name, datatype, shape, elements=split_bytes(name, raw, count))
    dtype = numpy_dtype(datatype).newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise bad_request(
            f"Input '{name}': {len(raw)} bytes of data for shape {shape} of {datatype} "
            f"({count * dtype.itemsize} expected)."
        )
    return InferInput(name, datatype, shape, array=np.frombuffer(raw, dtype=dtype).reshape(shape))


def split_bytes(name: str, raw: bytes, count: int) -> list[bytes]:
    """The elements of a serialized BYTES tensor; each must be whole and they must be `count`."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise bad_request(f"Input '{name}': a BYTES element's length prefix is cut short.")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise bad_request(
                f"Input '{name}': a BYTES element claims {length} bytes, {len(raw) - offset} remain."
            )
        elements.append(raw[offset : offset + length])
        offset += length
    if len(elements) != count:
        raise bad_request(f"Input '{name}': {len(elements)} BYTES elements for a shape of {count}.")
    return elements


def raw_bytes(tensor: OutputTensor) -> bytes:
    """An output tensor as raw bytes (little-endian; BYTES length-prefixed)."""
    if tensor.elements is not None:
        return b"".join(struct.pack("<I", len(e)) + e for e in tensor.elements)
    array = tensor.array
    assert array is not None  # an output tensor has its elements or its array
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
