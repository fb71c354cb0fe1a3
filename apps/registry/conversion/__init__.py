"""Converting PyTorch modules and scikit-learn estimators to ONNX, checked against the original.

`export_torch` and `export_sklearn` write one self-contained .onnx file, run it with
ONNX Runtime on the CPU (with the session options the platform serves with) and compare
its outputs with the original model's on sample inputs. A result outside the tolerance
raises `ConversionError` (code `conversion_mismatch`) and is never handed on silently.

The converters are optional extras (requirements-extras.txt): the platform runs without
them, so they are imported inside the functions, and a missing one raises
`ConversionError` with code `converter_missing` naming what to install.

PyTorch export uses the torch.export-based ("dynamo") exporter, the default and the
maintained one since torch 2.9; the TorchScript exporter (`dynamo=False`) still works in
torch 2.13 but warns that it will be removed. The dynamo exporter needs `onnxscript`
(pure Python, pinned in requirements-extras.txt); neither needs a network.

Modules: `pytorch` (`export_torch`), `scikit_learn` (`export_sklearn`), `checking` (the
tolerances, `ConversionError`, loading the converters and the result, comparing outputs) and
`report` (`ConversionReport`, what was written and how closely it matches).
"""
