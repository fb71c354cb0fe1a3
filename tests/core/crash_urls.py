"""A URLconf with a plain Django view that crashes, for testing handler500."""

from django.urls import path

from mlplatform.urls import handler404, handler500, urlpatterns


def crash(request):
    raise RuntimeError("secret internals")


urlpatterns = [*urlpatterns, path("crash", crash)]
__all__ = ["handler404", "handler500", "urlpatterns"]
