"""What becomes of a predict request, decided before the model runs: answered now, made a
batch job, or refused. The policy of the synchronous door; its view only reads HTTP."""

from django.conf import settings

from apps.accounts.credentials import Credential
from apps.accounts.models import ApiKey, User
from apps.core.exceptions import PayloadTooLarge
from apps.inference.services import LARGE_INPUT_HINT, ImageInput
from apps.inference.targets import check_servable
from apps.jobs.selectors import jobs_with_idempotency_key
from apps.registry.models import ModelVersion

ANSWER, JOB = "answer", "job"


def check_servable_or_replay(*, version: ModelVersion, user: User, idempotency_key: str) -> None:
    """409 version_not_ready, unless the request replays a job made with this Idempotency-Key:
    that job is answered as it is, whatever the version's state now."""
    if version.is_servable:
        return
    if idempotency_key and jobs_with_idempotency_key(user=user, key=idempotency_key).exists():
        return
    check_servable(version)


def decide_by_body(*, length: int, is_json: bool, wants_job: bool, api_key: Credential | None) -> str:
    """The body's size decides before it is read: JOB, ANSWER (read it and go on), or a 413."""
    if is_json and length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        # JSON is read into memory whole, by the predict and the jobs endpoint alike.
        raise PayloadTooLarge(
            f"The JSON body is {length} bytes; JSON bodies may be at most "
            f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE}. Send large inputs as multipart files, "
            "or as a batch job (multipart, or a zip or tar archive).",
            details={"limit_bytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE},
        )
    if wants_job:
        return JOB
    if settings.SYNC_MAX_BODY_BYTES < length <= settings.JOB_MAX_BYTES:
        check_can_divert(api_key, f"The request body is {length} bytes.")
        return JOB
    if length > settings.SYNC_MAX_BODY_BYTES:
        raise PayloadTooLarge(
            f"The request body is {length} bytes; at most {settings.JOB_MAX_BYTES} are accepted, "
            f"as a batch job (a synchronous request: {settings.SYNC_MAX_BODY_BYTES}).",
            details={"limit_bytes": settings.JOB_MAX_BYTES, "sync_limit_bytes": settings.SYNC_MAX_BODY_BYTES},
        )
    return ANSWER


def decide_by_images(*, images: list[ImageInput], api_key: Credential | None) -> str:
    """Images over the synchronous limits (count or size) make a job, not a refusal."""
    if len(images) > settings.SYNC_MAX_IMAGES or any(
        len(image.data) > settings.SYNC_MAX_IMAGE_BYTES for image in images
    ):
        check_can_divert(api_key, "The images are over the synchronous limits.")
        return JOB
    return ANSWER


def check_can_divert(api_key: Credential | None, reason: str) -> None:
    """An input over the synchronous limits becomes a batch job, which an API key may
    submit only with the 'jobs' scope; without it, the answer is 413 with the limits."""
    if api_key is not None and not api_key.has_scope(ApiKey.Scope.JOBS):
        raise PayloadTooLarge(
            f"{reason} {LARGE_INPUT_HINT} Such a request becomes a batch job, which "
            f"needs an {api_key.label} with the 'jobs' scope.",
            details={
                "sync_limit_bytes": settings.SYNC_MAX_BODY_BYTES,
                "sync_max_image_bytes": settings.SYNC_MAX_IMAGE_BYTES,
                "sync_max_images": settings.SYNC_MAX_IMAGES,
            },
        )
