"""Registry API: models, versions (upload), aliases, grants; one module per resource, and
`base` for the lookups and base view they share. Views are thin: parse, call, render."""

# apps/optimization/apis.py still imports these from the package; it is being changed by
# another piece of work, so they are re-exported here until it imports from `base`.
from apps.registry.apis.base import RegistryApi, visible_model, writable_model

__all__ = ["RegistryApi", "visible_model", "writable_model"]
