import logging
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks

from apps.auditstream.mode import MODES, fallback_reason

logger = logging.getLogger("apps.auditstream")


class AuditStreamConfig(AppConfig):
    name = "apps.auditstream"
    label = "auditstream"

    def ready(self) -> None:
        checks.register(check_audit_mode, "mlplatform")
        reason = fallback_reason()
        if reason:  # every process says so at start (the system check says it to manage.py)
            logger.warning("%s: audit rows and the quota are written durably instead.", reason)


def check_audit_mode(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if settings.AUDIT_MODE not in MODES:
        return [checks.Error(f"AUDIT_MODE must be one of {', '.join(MODES)}.", id="auditstream.E001")]
    reason = fallback_reason()
    if reason:
        return [checks.Warning(f"{reason}: audit rows are written durably.", id="auditstream.W001")]
    return []
