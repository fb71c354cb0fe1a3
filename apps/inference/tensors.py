"""Named tensor inputs from JSON: nested lists, flat lists with a shape, or base64
little-endian bytes with dtype and shape; checked against the version's signature. No ORM imports.
"""

import base64
import binascii
from typing import Any

import numpy as np

from apps.core.exceptions import UnprocessableInput
from apps.core.text import client_text

DTYPES = {
    "float32": np.float32,
    "float": np.float32,
    "float16": np.float16,
    "float64": np.float64,
    "double": np.float64,
    "int64": np.int64,
    "int32": np.int32,
    "int8": np.int8,
    "uint8": np.uint8,
    "bool": np.bool_,
}


def _expected_dtype(dtype_name: str) -> Any:
    return DTYPES.get(dtype_name)


def parse_tensor(name: str, value: Any, expected_dtype: str) -> np.ndarray:
    """A tensor from JSON: a nested list, {"data": [...], "shape": [...]}, or
    {"b64": "...", "dtype": "float32", "shape": [...]} (little-endian bytes)."""
    dtype = _expected_dtype(expected_dtype)
    if dtype is None:
        raise UnprocessableInput(
            f"Input '{name}' has type {expected_dtype}, which the API does not accept.", code="invalid_tensor"
        )
    try:
        if isinstance(value, dict) and "b64" in value:
            given = value.get("dtype", expected_dtype)
            given_dtype = _expected_dtype(given)
            if given_dtype is None:
                raise UnprocessableInput(f"Input '{name}': unknown dtype {given!r}.", code="invalid_tensor")
            raw = base64.b64decode(value["b64"], validate=True)
            array = np.frombuffer(raw, dtype=np.dtype(given_dtype).newbyteorder("<"))
            array = array.reshape(_shape(name, value["shape"]))
        elif isinstance(value, dict) and "data" in value:
            array = np.asarray(value["data"])
            if "shape" in value:
                array = array.reshape(_shape(name, value["shape"]))
        else:
            array = np.asarray(value)
    except (binascii.Error, TypeError, KeyError) as exc:
        raise UnprocessableInput(
            f"Input '{name}' is not a valid tensor: {exc}", code="invalid_tensor"
        ) from exc
    except ValueError as exc:  # ragged lists, wrong byte counts for the shape
        raise UnprocessableInput(
            f"Input '{name}' is not a valid tensor: {exc}", code="invalid_tensor"
        ) from exc
    if array.dtype == object or array.dtype.kind in "USO":
        raise UnprocessableInput(f"Input '{name}' must hold numbers.", code="invalid_tensor")
    if not _castable(array, dtype):
        hint = ""
        if np.issubdtype(dtype, np.integer) and array.dtype.kind == "f":
            hint = " (floats are accepted only as whole numbers up to 2**53, which they hold exactly)"
        raise UnprocessableInput(
            f"Input '{name}' expects {np.dtype(dtype).name}, got {array.dtype.name} values{hint}.",
            code="invalid_tensor",
            details={"input": name, "expected_dtype": np.dtype(dtype).name, "got_dtype": array.dtype.name},
        )
    _check_range(name, array, dtype)
    return array.astype(dtype, copy=False)


def _shape(name: str, shape: Any) -> list[int]:
    """A shape as sent: a list of sizes, each a non-negative integer (NumPy would read any
    negative size as "work it out")."""
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise UnprocessableInput(
            f"Input '{name}': 'shape' must be a list of non-negative integers, got {shape!r}.",
            code="invalid_tensor",
            details={"input": name},
        )
    return shape


def _check_range(name: str, array: np.ndarray, dtype: Any) -> None:
    """Values must fit the input's type: a cast would wrap integers (300 → 44 in uint8)
    and turn large floats into Inf."""
    target = np.dtype(dtype)
    if array.size == 0 or target.kind == "b" or array.dtype.kind == "b" or array.dtype == target:
        return
    values = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    if values.size == 0:
        return
    low, high = values.min(), values.max()
    if target.kind == "f":
        with np.errstate(over="ignore"):
            fits = not np.isinf(values.astype(target)).any()
        limits: np.finfo[Any] | np.iinfo[Any] = np.finfo(target)
    else:
        limits = np.iinfo(target)
        if array.dtype.kind == "f":  # float(max) + 1 is a power of two: exact, unlike max itself
            fits = float(limits.min) <= low and high < float(limits.max) + 1
        else:
            fits = limits.min <= low and high <= limits.max
    if not fits:
        raise UnprocessableInput(
            f"Input '{name}' expects {target.name}, whose values lie in [{limits.min}, {limits.max}]; "
            f"got values from {low} to {high}.",
            code="invalid_tensor",
            details={
                "input": name,
                "expected_dtype": target.name,
                "got_min": float(low),
                "got_max": float(high),
            },
        )


def _castable(array: np.ndarray, dtype: Any) -> bool:
    """Ints into floats are fine; floats into ints only when they hold whole numbers that a
    float holds exactly (up to 2**53: past it, 2**60 + 1 would already have become 2**60).
    Booleans only into booleans."""
    if array.dtype == dtype:
        return array.dtype.kind in "biuf"
    if np.issubdtype(dtype, np.floating):
        return array.dtype.kind in "iuf"
    if np.issubdtype(dtype, np.integer):
        if array.dtype.kind in "iu":
            return True
        return array.dtype.kind == "f" and bool(
            np.all(np.isfinite(array)) and np.all(array == np.round(array)) and np.all(np.abs(array) <= 2**53)
        )
    if dtype is np.bool_:
        return array.dtype.kind == "b"
    return False


def check_shape(name: str, array: np.ndarray, expected: list[int]) -> None:
    """Rank and every static dim must match; -1 accepts any size."""
    got = list(array.shape)
    ok = len(got) == len(expected) and all(e < 0 or e == g for e, g in zip(expected, got, strict=True))
    if not ok:
        raise UnprocessableInput(
            f"Input '{name}' expects shape {expected} (-1: any), got {got}.",
            code="invalid_tensor",
            details={"input": name, "expected_shape": expected, "got_shape": got},
        )


def check_finite(name: str, array: np.ndarray, policy: str) -> None:
    """The version's policy for NaN and ±Inf: 'reject' (default) or 'allow'."""
    if policy == "allow" or not np.issubdtype(array.dtype, np.floating):
        return
    if not np.all(np.isfinite(array)):
        raise UnprocessableInput(
            f"Input '{name}' contains NaN or Inf, which this model version does not accept.",
            code="non_finite_input",
            details={"input": name},
        )


def parse_tensor_inputs(
    inputs: Any, signature_inputs: list[dict[str, Any]], *, non_finite: str = "reject"
) -> dict[str, np.ndarray]:
    if not isinstance(inputs, dict) or not inputs:
        raise UnprocessableInput("'inputs' must be an object of named tensors.", code="invalid_tensor")
    expected = {spec["name"]: spec for spec in signature_inputs}
    # The client's names, echoed back: made safe to store and to encode, and at most 20.
    unknown = [client_text(name, 200) for name in sorted(set(inputs) - set(expected))[:20]]
    missing = sorted(set(expected) - set(inputs))
    if unknown or missing:
        raise UnprocessableInput(
            f"Expected inputs {sorted(expected)}; unknown: {unknown}, missing: {missing}.",
            code="invalid_tensor",
            details={"expected": sorted(expected), "unknown": unknown, "missing": missing},
        )
    feeds = {}
    for name, spec in expected.items():
        array = parse_tensor(name, inputs[name], spec["dtype"])
        check_shape(name, array, spec["shape"])
        check_finite(name, array, non_finite)
        feeds[name] = array
    return feeds
