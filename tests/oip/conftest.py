from tests.inference.conftest import (  # noqa: F401  (fixtures shared with the inference tests)
    demo_version,
    encode,
    fresh_session_cache,
    photo,
    tensor_version,
    tiny_version,
)
