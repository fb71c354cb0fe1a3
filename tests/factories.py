import factory
from django.core.files.base import ContentFile

from apps.accounts.models import User
from apps.registry.models import MLModel, ModelVersion
from tests import onnx_models


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("secret-password")


class MLModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MLModel

    name = factory.Sequence(lambda n: f"model-{n}")
    owner = factory.SubFactory(UserFactory)
    task = MLModel.Task.IMAGE_CLASSIFICATION


class ModelVersionFactory(factory.django.DjangoModelFactory):
    """A version row with a real (tiny) ONNX file; status as given, no validation run."""

    class Meta:
        model = ModelVersion
        skip_postgeneration_save = True

    model = factory.SubFactory(MLModelFactory)
    number = factory.Sequence(lambda n: n + 1)
    sha256 = factory.Sequence(lambda n: f"{n:064x}")
    size_bytes = 100
    status = ModelVersion.Status.READY
    artifact = factory.LazyFunction(lambda: ContentFile(onnx_models.tiny_classifier(), name="model.onnx"))

    @factory.post_generation
    def advance_counter(self, create: bool, extracted: object, **kwargs: object) -> None:
        """Keep the model's version counter ahead of versions made here, as uploads do."""
        if create and self.model.next_version_number <= self.number:
            MLModel.objects.filter(pk=self.model_id).update(next_version_number=self.number + 1)
            self.model.next_version_number = self.number + 1
