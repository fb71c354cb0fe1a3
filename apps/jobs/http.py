"""The jobs door in HTTP terms: a submission read from a request (the jobs endpoint's, or a
predict request that becomes a job), and the 202 that answers it. Policy (scopes, limits,
what a job may run on) is the submitting service's."""

from typing import Any

from django.conf import settings
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.authenticated import AuthenticatedRequest
from apps.accounts.authentication import client_address
from apps.accounts.permissions import request_api_key
from apps.core.exceptions import InvalidInput
from apps.core.http import content_length, media_type
from apps.jobs import inputs, services
from apps.jobs.idempotency import parse_idempotency_key
from apps.jobs.models import BatchJob
from apps.jobs.serializers import JobOutputSerializer


class JobSubmitSerializer(serializers.Serializer):
    model = serializers.SlugField(max_length=100)
    version = serializers.IntegerField(min_value=1, required=False)
    alias = serializers.SlugField(max_length=64, required=False)
    top_k = serializers.IntegerField(min_value=1, max_value=settings.PREDICT_MAX_TOP_K, required=False)
    webhook_url = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class JobJsonInputSerializer(JobSubmitSerializer):
    images = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Base64 images (or data: URLs)."
    )
    inputs = serializers.ListField(
        child=serializers.DictField(), required=False, help_text="One object of named tensors per item."
    )


def submission_from_request(
    request: AuthenticatedRequest, *, model: str | None = None, images: list[Any] | None = None
) -> services.JobSubmission:
    """A JobSubmission from a job request (or, with `model`, from a predict request whose
    version, alias and top_k come in the query; `images` when its body is already parsed)."""
    key = parse_idempotency_key(request.headers.get("Idempotency-Key", ""))
    services.job_admit(api_key=request_api_key(request), body_bytes=content_length(request))
    is_multipart = media_type(request).startswith("multipart/")
    # request.data is whatever the parser made (the stubs say a dict or a list): a dict, a
    # QueryDict, or RawImageParser's bytes.
    parsed: Any = request.data
    data = parsed if hasattr(parsed, "get") else {}
    fields = {k: data.get(k) for k in ("model", "version", "alias", "top_k", "webhook_url") if data.get(k)}
    if model is not None:
        # As the synchronous predict reads them: the version from the query only, top_k from
        # the query or the body.
        fields = {"model": model, **({"top_k": fields["top_k"]} if "top_k" in fields else {})}
        for name in ("version", "alias", "top_k"):
            if request.query_params.get(name):
                fields[name] = request.query_params[name]
    meta = JobSubmitSerializer(data=fields)
    meta.is_valid(raise_exception=True)
    submission = services.JobSubmission(
        user=request.user,
        api_key=request_api_key(request),
        model=meta.validated_data["model"],
        version=meta.validated_data.get("version"),
        alias=meta.validated_data.get("alias"),
        top_k=meta.validated_data.get("top_k") or settings.PREDICT_DEFAULT_TOP_K,
        webhook_url=meta.validated_data.get("webhook_url", ""),
        idempotency_key=key,
        request_id=getattr(request._request, "request_id", ""),
        client_address=client_address(request),
        routing_key=request.headers.get("X-Routing-Key", ""),
    )
    if images is not None:  # a predict body, already parsed
        submission.sources = [inputs.parsed_images(images)]
    elif media_type(request).startswith("image/"):
        body = parsed if isinstance(parsed, bytes) else b""
        if not body:
            raise InvalidInput("The request body is empty.", code="empty_job")
        submission.sources = [iter([inputs.JobInput(data=body, content_type=media_type(request))])]
    elif is_multipart:
        files = [*request.FILES.getlist("inputs"), *request.FILES.getlist("image")]
        if not files and not request.FILES.getlist("archive"):
            raise _no_multipart_inputs(request)
        submission.sources = [inputs.uploaded_files(files)]
        submission.sources += [inputs.archive_inputs(a) for a in request.FILES.getlist("archive")]
    else:
        if model is None:  # a predict body was checked by the predict view's own rules
            checked = JobJsonInputSerializer(data=data)
            checked.is_valid(raise_exception=True)
        given = [name for name in ("images", "inputs", "image") if name in data]
        if len(given) != 1:
            raise InvalidInput("Send exactly one of 'images' or 'inputs'.", code="no_input")
        if given[0] == "inputs":
            submission.kind = "tensor"
            values = data["inputs"] if isinstance(data["inputs"], list) else [data["inputs"]]
            submission.sources = [inputs.tensor_inputs(values)]
        else:
            values = data[given[0]] if isinstance(data[given[0]], list) else [data[given[0]]]
            submission.sources = [inputs.base64_images(values)]
    return submission


ACCEPTED_FILE_FIELDS = ("inputs", "image", "archive")


def _no_multipart_inputs(request: Request) -> InvalidInput:
    """empty_job for a multipart body without files under the fields a job reads, naming them
    (and the fields the files came under, a likely typo such as `images`)."""
    sent = sorted(name[:100] for name in request.FILES)
    got = f" Files came under: {', '.join(repr(name) for name in sent)}." if sent else ""
    return InvalidInput(
        "The job has no inputs: send files in the multipart field 'inputs' (or 'image'), "
        f"or zip/tar archives in the field 'archive'.{got}",
        code="empty_job",
        details={"accepted_fields": list(ACCEPTED_FILE_FIELDS), "file_fields": sent},
    )


def job_accepted(job: BatchJob, created: bool) -> Response:
    response = Response(
        JobOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK
    )
    response["Location"] = f"/api/v1/jobs/{job.pk}/"
    return response
