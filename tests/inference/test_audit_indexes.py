"""The audit table's indexes and keys on PostgreSQL, as migration 0003 leaves them."""

import pytest
from django.db import connection

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL; CI runs it there"),
]


def rows(sql: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return {row[0] for row in cursor.fetchall()}


def test_every_index_written_per_prediction_is_one_a_lookup_needs():
    indexes = rows("SELECT indexname FROM pg_indexes WHERE tablename = 'inference_prediction'")
    assert indexes == {
        "inference_prediction_pkey",
        "inference_prediction_created_at_6227123f",
        "inference_prediction_api_key_id_6965c0ce",
        "inference_prediction_model_version_id_c39098c1",
        "inference_prediction_job_item_id_key",
        "prediction_user_recent",
        "prediction_model_recent",
        "prediction_input_sha256",
        "prediction_request_id",
        # partial (source = 'shadow'): written only by shadow rows, never by a caller's request;
        # it makes a retried shadow task write once (issue 16)
        "one_shadow_row_per_input",
    }


def test_the_foreign_keys_are_all_still_there():
    keys = rows(
        "SELECT conname FROM pg_constraint"
        " WHERE conrelid = 'inference_prediction'::regclass AND contype = 'f'"
    )
    assert len(keys) == 4
    assert any("user_id" in key for key in keys)
