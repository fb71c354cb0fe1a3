"""The prediction's page in the console shows when it was made (issue 18)."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from apps.inference.models import Prediction
from tests.inference.conftest import photo

pytestmark = pytest.mark.django_db


def test_the_prediction_page_shows_its_timestamp(client, staff_user, api, tiny_version):
    image = SimpleUploadedFile("c.jpg", photo("coffee"), content_type="image/jpeg")
    assert api.post("/api/v1/models/tiny/predict", {"image": image}, format="multipart").status_code == 200
    prediction = Prediction.objects.get()
    client.force_login(staff_user)
    page = client.get(f"/admin/inference/prediction/{prediction.pk}/change/").content.decode()
    assert 'class="form-row field-created_at"' in page
    assert str(timezone.localtime(prediction.created_at).year) in page.split("field-created_at")[1][:400]
