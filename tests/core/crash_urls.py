"""A URLconf with views that crash (a plain Django one and a DRF one), for testing handler500."""

from django.urls import path
from rest_framework.views import APIView

from mlplatform.urls import handler404, handler500, urlpatterns


def crash(request):
    raise RuntimeError("secret internals")


class CrashApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request):
        raise RuntimeError("secret internals")


urlpatterns = [*urlpatterns, path("crash", crash), path("crash-api", CrashApi.as_view())]
__all__ = ["handler404", "handler500", "urlpatterns"]
