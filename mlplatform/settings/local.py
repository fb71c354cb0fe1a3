"""One-machine development and demo settings (`make run`)."""

from .base import *  # noqa: F403
from .base import STORAGES, env

# DEBUG stays off unless asked for: API clients get JSON errors, never HTML debug pages.
DEBUG = env.bool("DEBUG", default=False)
# Static files are served from the app directories without running collectstatic.
WHITENOISE_USE_FINDERS = True
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405 (whitenoise warns when it is missing)
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
LOG_FORMAT = env("LOG_FORMAT", default="plain")
LOGGING["handlers"]["console"]["formatter"] = LOG_FORMAT  # noqa: F405
