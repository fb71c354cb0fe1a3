"""Converting a fitted scikit-learn estimator or pipeline to ONNX with skl2onnx, checked against it."""

from pathlib import Path
from typing import Any

import numpy as np
import onnx

from apps.registry.conversion.checking import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    ConversionError,
    compare_outputs,
    cpu_session,
    require_converter,
)
from apps.registry.conversion.report import ConversionReport, conversion_report


def export_sklearn(
    estimator: Any,
    sample_X: Any,
    path: Path,
    *,
    target_opset: int | dict[str, int] | None = None,
    input_name: str = "input",
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> ConversionReport:
    """Convert a fitted scikit-learn estimator or pipeline to ONNX at `path` and check it.

    The model takes one float32 input `input_name` of shape [batch, n_features], where
    n_features is the number of columns of `sample_X`. A classifier is converted without
    the ZipMap operator, so its outputs are two plain tensors, `label` [batch] and
    `probabilities` [batch, classes]. `target_opset=None` lets skl2onnx pick the newest
    opset it was tested with.

    Checked on `sample_X` (as float32): a classifier's ONNX labels must equal
    `predict` and its probabilities be close to `predict_proba`; a regressor's output
    close to `predict`; a transformer's close to `transform`.
    """
    skl2onnx = require_converter("skl2onnx", "scikit-learn conversion needs skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.base import is_classifier

    X = np.asarray(sample_X, dtype=np.float32)
    if X.ndim != 2 or not X.shape[0]:
        raise ConversionError(f"sample_X must be a non-empty 2-D array, not {X.shape}.", code="invalid_input")
    classifier = is_classifier(estimator)
    try:
        model = skl2onnx.to_onnx(
            estimator,
            initial_types=[(input_name, FloatTensorType([None, X.shape[1]]))],
            target_opset=target_opset,
            options={"zipmap": False} if classifier else None,
        )
    except Exception as exc:  # unsupported estimators raise various types
        raise ConversionError(f"skl2onnx could not convert the model: {exc}", code="export_failed") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))

    session = cpu_session(path)
    actual = session.run(None, {input_name: X})
    if classifier:
        _check_labels(actual[0], estimator.predict(X))
        has_proba = hasattr(estimator, "predict_proba") and len(actual) > 1
        expected = [estimator.predict_proba(X)] if has_proba else []
        actual = actual[1:2] if expected else []
    elif hasattr(estimator, "predict"):
        expected, actual = [estimator.predict(X)], actual[:1]
    else:
        expected, actual = [estimator.transform(X)], actual[:1]
    worst = compare_outputs(expected, actual, atol=atol, rtol=rtol, check="sample_X", reshape=True)
    return conversion_report(path, session, worst, X.shape[0])


def _check_labels(actual: np.ndarray, expected: np.ndarray) -> None:
    # Compared as text: string class labels come back from ONNX Runtime as objects.
    differ = np.asarray(actual).astype(str).ravel() != np.asarray(expected).astype(str).ravel()
    if differ.any():
        raise ConversionError(
            f"The ONNX model predicts a different label for {int(differ.sum())} of {differ.size} samples.",
            details={"mismatched_labels": int(differ.sum()), "samples": int(differ.size)},
        )
