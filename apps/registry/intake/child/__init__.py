"""The converter that runs in the sandboxed child process (apps/registry/intake/sandbox.py).

No Django here, and no settings: the child gets a job file and an empty environment, and
writes a result file. The frameworks (TensorFlow, tf2onnx, torch) are optional extras,
imported inside the functions.
"""
