"""The Open Inference Protocol over gRPC: `inference.GRPCInferenceService` from the stubs
tritonclient ships (ADR 0014), the standard health service and server reflection.

- `tensors.py` translates the protocol's messages to and from apps/oip/protocol.py;
- `calls.py` is every call's frame: request id, credentials from metadata, scope and
  throttle, database connections, errors as gRPC status codes, metrics;
- `servicer.py` answers each RPC with apps/oip/services.py;
- `server.py` builds, starts and stops the server (`manage.py grpcserver`).
"""
