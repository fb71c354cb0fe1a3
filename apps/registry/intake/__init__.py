"""Uploads in formats other than ONNX: recognised and checked on upload (`formats`), converted
to ONNX in a sandboxed child process on the `conversion` queue (`sandbox`, `child/`).

This package's `__init__` imports nothing: the child process imports `child/` without Django.
"""
