from tests.inference.conftest import (  # noqa: F401  (fixtures shared with the inference tests)
    fresh_session_cache,
    tensor_version,
    tiny_version,
)
