"""Existing versions keep the full image decode: fast_decode false in their preprocessing.

The option (docs/decisions/0013-fast-jpeg-decode.md) is on by default for versions made
from now on; versions made before it must not change their answers under their users.
A config without the key already decodes in full at run time; this writes the choice
down, so that the API and the admin show it and a later change of the runtime default
cannot reach these versions. A config that already has the key keeps it.
"""

from django.db import migrations

BATCH = 500


def fast_decode_off(apps, schema_editor):
    ModelVersion = apps.get_model("registry", "ModelVersion")
    changed = []
    for version in ModelVersion.objects.only("pk", "preprocessing").iterator(chunk_size=BATCH):
        config = version.preprocessing if isinstance(version.preprocessing, dict) else {}
        if "fast_decode" in config:
            continue
        version.preprocessing = {**config, "fast_decode": False}
        changed.append(version)
        if len(changed) >= BATCH:
            ModelVersion.objects.bulk_update(changed, ["preprocessing"])
            changed = []
    if changed:
        ModelVersion.objects.bulk_update(changed, ["preprocessing"])


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0002_modelversion_optimization"),
    ]

    operations = [
        # Backwards: nothing to undo. Code from before the option ignores the key.
        migrations.RunPython(fast_decode_off, migrations.RunPython.noop),
    ]
