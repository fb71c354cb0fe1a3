from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "apps.inference"
    label = "inference"

    def ready(self) -> None:
        from PIL import Image

        from apps.inference import signals  # noqa: F401  (clears cached prediction targets)

        # Pillow's own bomb guard would raise inside Image.open, before our check (in
        # apps/inference/preprocessing.decode_image) can answer 413 with the image's size.
        # Ours reads the header first and refuses anything over MAX_IMAGE_PIXELS.
        Image.MAX_IMAGE_PIXELS = None
