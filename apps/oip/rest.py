"""The Open Inference Protocol's REST wire format: a JSON inference header, optionally
followed by binary tensor data (the binary tensor data extension: the header's length in
`Inference-Header-Content-Length`, each binary tensor's size in its
`parameters.binary_data_size`), optionally compressed (gzip or deflate both ways)."""

import gzip
import json
import zlib
from typing import Any

import numpy as np

from apps.core.exceptions import PayloadTooLarge
from apps.inference import postprocessing, tensors
from apps.oip.datatypes import BYTES, check_shape, element_count, input_from_raw, numpy_dtype, raw_bytes
from apps.oip.protocol import InferInput, InferRequest, InferResponse, RequestedOutput, bad_request

HEADER_LENGTH = "Inference-Header-Content-Length"
ENCODINGS = ("gzip", "deflate")


def decompress(body: bytes, encoding: str, *, limit: int) -> bytes:
    """The body as sent before `Content-Encoding`, refused (413) once it would pass `limit`."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ENCODINGS:
        raise bad_request(f"Content-Encoding {encoding[:32]!r} is not supported; use gzip or deflate.")
    # 16 + MAX_WBITS: the gzip wrapper; MAX_WBITS: zlib's, as "deflate" means in HTTP.
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise bad_request(f"The {encoding} body cannot be decompressed: {exc}.") from exc
    if len(data) > limit:
        raise PayloadTooLarge(
            f"The request decompresses to more than {limit} bytes.",
            code="payload_too_large",
            details={"limit_bytes": limit},
        )
    if not inflater.eof:
        raise bad_request(f"The {encoding} body is truncated.")
    return data


def compress(body: bytes, accept_encoding: str) -> tuple[bytes, str]:
    """The body compressed as the client accepts (gzip first), and the encoding used."""
    accepted = {part.split(";")[0].strip().lower() for part in accept_encoding.split(",")}
    if "gzip" in accepted:
        return gzip.compress(body, compresslevel=1, mtime=0), "gzip"
    if "deflate" in accepted:
        return zlib.compress(body, 1), "deflate"
    return body, ""


def read_request(body: bytes, header_length: str | None) -> InferRequest:
    """An inference request from the (decompressed) body."""
    size = len(body)
    if header_length is not None:
        if not header_length.strip().isdigit() or int(header_length) > size:
            raise bad_request(
                f"{HEADER_LENGTH} must be a whole number of bytes no larger than the body ({size})."
            )
        size = int(header_length)
    try:
        header = json.loads(body[:size])
    except (ValueError, RecursionError) as exc:
        raise bad_request(f"The inference header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise bad_request("The inference header must be a JSON object.")
    binary = memoryview(body)[size:]
    inputs, offset = [], 0
    for entry in _list(header, "inputs"):
        item, offset = _input(entry, binary, offset)
        inputs.append(item)
    if offset != len(binary):
        raise bad_request(
            f"The body holds {len(binary)} bytes of binary data; the inputs' binary_data_size "
            f"add up to {offset}."
        )
    parameters = header.get("parameters") or {}
    request_id = header.get("id", "")
    if not isinstance(parameters, dict) or not isinstance(request_id, str):
        raise bad_request("'parameters' must be an object and 'id' a string.")
    outputs = [_output(entry) for entry in _list(header, "outputs")]
    return InferRequest(id=request_id[:256], inputs=inputs, outputs=outputs, parameters=parameters)


def read_json_object(body: bytes) -> dict[str, Any]:
    """An optional JSON object body (the repository requests'): {} when empty."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise bad_request(f"The body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise bad_request("The body must be a JSON object.")
    return value


def _list(header: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = header.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise bad_request(f"'{key}' must be a list of objects.")
    return value


def _input(entry: dict[str, Any], binary: memoryview, offset: int) -> tuple[InferInput, int]:
    name, datatype = entry.get("name"), entry.get("datatype")
    if not isinstance(name, str) or not isinstance(datatype, str):
        raise bad_request("Each input needs a 'name' and a 'datatype'.")
    shape = check_shape(name, entry.get("shape"))
    parameters = entry.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise bad_request(f"Input '{name}': 'parameters' must be an object.")
    size = parameters.get("binary_data_size")
    if size is None:
        if "data" not in entry:
            raise bad_request(f"Input '{name}' has neither 'data' nor parameters.binary_data_size.")
        return _from_json(name, datatype, shape, entry["data"]), offset
    if "data" in entry:
        raise bad_request(f"Input '{name}' has both 'data' and binary data; send one.")
    if type(size) is not int or size < 0 or offset + size > len(binary):
        raise bad_request(
            f"Input '{name}': binary_data_size {str(size)[:32]} does not fit the "
            f"{len(binary) - offset} bytes of binary data left."
        )
    return input_from_raw(name, datatype, shape, bytes(binary[offset : offset + size])), offset + size


def _from_json(name: str, datatype: str, shape: list[int], data: Any) -> InferInput:
    """A tensor from JSON `data`, flat or nested, in row-major order."""
    count = element_count(shape)
    if datatype == BYTES:
        elements = _flat_strings(name, data)
        if len(elements) != count:
            raise bad_request(f"Input '{name}': {len(elements)} elements for shape {shape}.")
        return InferInput(name, datatype, shape, elements=elements)
    dtype = numpy_dtype(datatype)
    try:
        values = np.asarray(data)
    except ValueError as exc:  # ragged lists
        raise bad_request(f"Input '{name}': 'data' is not a regular array: {exc}") from exc
    if values.dtype.kind not in "biuf" or values.size != count:
        raise bad_request(f"Input '{name}': 'data' must hold {count} numbers for shape {shape}.")
    values = values.reshape(shape)
    if dtype.name in tensors.DTYPES:  # the same casting and range rules as /api/v1 tensors
        return InferInput(name, datatype, shape, array=tensors.parse_tensor(name, values, dtype.name))
    return InferInput(name, datatype, shape, array=values.astype(dtype))


def _flat_strings(name: str, data: Any) -> list[bytes]:
    flat: list[bytes] = []
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(reversed(value))
        elif isinstance(value, str):
            flat.append(value.encode())
        else:
            raise bad_request(f"Input '{name}': BYTES data must be strings.")
    return flat


def _output(entry: dict[str, Any]) -> RequestedOutput:
    name = entry.get("name")
    parameters = entry.get("parameters") or {}
    if not isinstance(name, str) or not isinstance(parameters, dict):
        raise bad_request("Each requested output needs a 'name' (and 'parameters' an object).")
    binary, k = parameters.get("binary_data"), parameters.get("classification", 0)
    if binary is not None and not isinstance(binary, bool):
        raise bad_request(f"Output '{name}': binary_data must be true or false.")
    if type(k) is not int or k < 0:
        raise bad_request(f"Output '{name}': classification must be a whole number of classes.")
    return RequestedOutput(name=name, binary=binary, classification=k)


def write_response(response: InferResponse, *, binary_default: bool) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary data follows it."""
    outputs, blobs = [], []
    for tensor in response.outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if tensor.binary if tensor.binary is not None else binary_default:
            raw = raw_bytes(tensor)
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = _json_data(tensor)
        outputs.append(entry)
    header: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id:
        header["id"] = response.id
    header["outputs"] = outputs
    head = json.dumps(header, separators=(",", ":")).encode()
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def _json_data(tensor: Any) -> list[Any]:
    if tensor.elements is not None:
        return [e.decode("utf-8", errors="replace") for e in tensor.elements]
    values = tensor.array.ravel().tolist()
    if tensor.array.dtype.kind == "f" and not np.all(np.isfinite(tensor.array)):
        return postprocessing.json_safe(values)  # NaN as null, ±Inf as strings: valid JSON
    return values
