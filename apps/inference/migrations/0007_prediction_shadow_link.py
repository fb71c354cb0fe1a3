# A rollout's shadow rows (ADR 0018): the input's index, a 'shadow' source, and a partial
# unique index so that a retried shadow task writes each input's row once. The audit table is
# the largest: the column is a bare nullable one (no rewrite) and, on PostgreSQL, the index is
# built CONCURRENTLY (writes never blocked); the constraint enters Django's state alone.

from django.db import migrations, models

INDEX_SQL = (
    'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "one_shadow_row_per_input" '
    'ON "inference_prediction" ("request_id", "input_index") WHERE "source" = \'shadow\''
)


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(INDEX_SQL)
    else:
        schema_editor.execute(INDEX_SQL.replace(" CONCURRENTLY", ""))


def drop_index(apps, schema_editor):
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f'DROP INDEX{concurrently} IF EXISTS "one_shadow_row_per_input"')


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("inference", "0006_prediction_route"),
    ]

    operations = [
        migrations.AddField(
            model_name="prediction",
            name="input_index",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="prediction",
            name="source",
            field=models.CharField(
                choices=[
                    ("sync", "Sync"),
                    ("job", "Job"),
                    ("v2-rest", "V2 Rest"),
                    ("v2-grpc", "V2 Grpc"),
                    ("shadow", "Shadow"),
                ],
                default="sync",
                max_length=8,
            ),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddConstraint(
                    model_name="prediction",
                    constraint=models.UniqueConstraint(
                        condition=models.Q(("source", "shadow")),
                        fields=("request_id", "input_index"),
                        name="one_shadow_row_per_input",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(create_index, drop_index)],
        ),
    ]
