"""Production settings for the browser suite's live server, but for one thing: static files
are hashed (a manifest, as in production) and not compressed. WhiteNoise's gzip and Brotli
pass over Swagger UI's and ReDoc's bundles costs ~45 s of CPU at each collectstatic, and the
browser accepts either form."""

from mlplatform.settings.production import *  # noqa: F403
from mlplatform.settings.production import STORAGES

STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}
