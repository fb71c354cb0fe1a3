"""ASGI entry point, for an ASGI server if one is measured faster."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlplatform.settings.local")

application = get_asgi_application()
