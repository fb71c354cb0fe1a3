"""Settings for the test suite; DATABASE_URL and REDIS_URL come from the environment in CI."""

from .base import *  # noqa: F403
from .base import env

# Tasks run inline in the test process; the end-to-end tests start real workers.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
WHITENOISE_USE_FINDERS = True
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405 (whitenoise warns when it is missing)
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
# Tests run in one process and reuse model names across tests: no per-process caching
# (tests that exercise it turn it on themselves).
LOCAL_CACHE_SECONDS = 0
# A shadow is sent at once, in the request's thread (tests of the sender thread set it).
SHADOW_BATCH_SECONDS = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "apps.oauth.hashers.ClientSecretHasher"]
# Keep validation quick in unit tests; the numbers are still real measurements.
VALIDATION_LATENCY_RUNS = 20
VALIDATION_THROUGHPUT_RUNS = 2
LOGGING["handlers"]["console"]["formatter"] = env("LOG_FORMAT", default="plain")  # noqa: F405
