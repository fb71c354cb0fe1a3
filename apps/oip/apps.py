from django.apps import AppConfig


class OipConfig(AppConfig):
    """The Open Inference Protocol (KServe v2) doors: REST under /v2 and gRPC."""

    name = "apps.oip"
    label = "oip"
