"""Prediction API: POST /models/{name}/predict, and the audit trail at /predictions/."""

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authenticated import AuthenticatedRequest
from apps.accounts.authentication import client_address
from apps.accounts.models import ApiKey
from apps.accounts.permissions import request_api_key
from apps.core.exceptions import InvalidInput
from apps.core.http import content_length, media_type
from apps.core.middleware import log_context
from apps.core.parsers import LenientJSONParser, RawImageParser, SmallMultiPartParser
from apps.core.schema import error_responses
from apps.core.uploads import JOB_INPUT_LIMITS
from apps.inference import admission, services
from apps.jobs.http import job_accepted, submission_from_request
from apps.jobs.idempotency import parse_idempotency_key
from apps.jobs.serializers import JobOutputSerializer
from apps.jobs.services import JobSubmission, job_submit


class PredictApi(APIView):
    """Predict with a model version: images (multipart or base64 JSON) or named tensors."""

    parser_classes = [LenientJSONParser, SmallMultiPartParser, RawImageParser]
    upload_limits = JOB_INPUT_LIMITS  # an input over the synchronous limits becomes a job
    required_scope = ApiKey.Scope.PREDICT
    throttle_scope = "predict"

    class PredictQuerySerializer(serializers.Serializer):
        version = serializers.IntegerField(min_value=1, required=False)
        alias = serializers.SlugField(max_length=64, required=False)
        top_k = serializers.IntegerField(min_value=1, max_value=settings.PREDICT_MAX_TOP_K, required=False)

    class PredictJsonInputSerializer(serializers.Serializer):
        image = serializers.CharField(required=False, help_text="One base64 image (or a data: URL).")
        images = serializers.ListField(
            child=serializers.CharField(), required=False, max_length=settings.JOB_MAX_ITEMS
        )
        inputs = serializers.DictField(
            required=False, help_text="Named tensors: nested lists, {data, shape} or {b64, dtype, shape}."
        )
        top_k = serializers.IntegerField(min_value=1, max_value=settings.PREDICT_MAX_TOP_K, required=False)

    @extend_schema(
        operation_id="models_predict",
        parameters=[
            OpenApiParameter("version", int, description="Version number (default: the alias)."),
            OpenApiParameter("alias", str, description="Alias (default: production)."),
            OpenApiParameter(
                "X-Routing-Key",
                str,
                OpenApiParameter.HEADER,
                description=(
                    "Who this traffic belongs to, for an alias under a rollout (at most 256 "
                    "bytes; default: the API key, else the user): one key, one version."
                ),
            ),
            OpenApiParameter(
                "top_k", int, description=f"Classes per image (1-{settings.PREDICT_MAX_TOP_K})."
            ),
        ],
        # Multipart first: Swagger UI's "Try it out" opens on it, a photo upload.
        request={
            "multipart/form-data": inline_serializer(
                "PredictMultipartInput",
                {
                    "image": serializers.ListField(child=serializers.FileField()),
                    "top_k": serializers.IntegerField(
                        min_value=1,
                        max_value=settings.PREDICT_MAX_TOP_K,
                        required=False,
                        help_text=f"Classes per image (default {settings.PREDICT_DEFAULT_TOP_K}).",
                    ),
                },
            ),
            "application/json": PredictJsonInputSerializer,
            "image/*": {"type": "string", "format": "binary"},
        },
        responses={
            200: inline_serializer(
                "PredictOutput",
                {
                    "model": serializers.CharField(),
                    "version": serializers.IntegerField(),
                    "alias": serializers.CharField(allow_null=True),
                    "route": serializers.ChoiceField(
                        choices=["primary", "canary"],
                        allow_null=True,
                        help_text="Why this version answered: the alias's rollout split, or null.",
                    ),
                    "predictions": serializers.ListField(child=serializers.DictField()),
                    "timings_ms": serializers.DictField(child=serializers.FloatField()),
                    "request_id": serializers.CharField(),
                },
            ),
            202: JobOutputSerializer,
            **error_responses(400, 403, 404, 409, 413, 415, 422, 429),
        },
        description=(
            "With `Prefer: respond-async`, or an input over the synchronous limits (body, image "
            "size or count), the request becomes a batch job: 202 with `Location` and the job. "
            "A JSON body over `DATA_UPLOAD_MAX_MEMORY_SIZE` (32 MiB) is 413: JSON is read whole. "
            "An API key without the `jobs` scope gets 413 for an input over the limits, and 403 "
            "for `Prefer: respond-async`. Once the version is known, every refusal is recorded "
            "as a failed prediction."
        ),
    )
    def post(self, request: AuthenticatedRequest, name: str) -> Response:
        query, query_errors = self._query(request)
        if {"version", "alias"} & query_errors.keys():
            raise serializers.ValidationError(query_errors)
        caller = services.Caller(
            user=request.user,
            api_key=request_api_key(request),
            request_id=getattr(request._request, "request_id", ""),
            client_address=client_address(request),
            routing_key=request.headers.get("X-Routing-Key", ""),
        )
        model, version, alias, route = services.resolve_target(
            user=request.user,
            api_key=caller.api_key,
            name=name,
            version=query.get("version"),
            alias=query.get("alias"),
            routing_key=caller.routing_key,
        )
        log_context(request).update(model=model.name, version=version.number)
        payload = services.PredictionRequest()
        try:
            # Everything refused from here on, before the model runs, is recorded as a failed
            # prediction of this version; services.predict records what fails after.
            if query_errors:
                raise serializers.ValidationError(query_errors)
            admission.check_servable_or_replay(
                version=version,
                user=request.user,
                idempotency_key=parse_idempotency_key(request.headers.get("Idempotency-Key", "")),
            )
            decision = admission.decide_by_body(
                length=content_length(request),
                is_json=media_type(request) == "application/json",
                wants_job=self._wants_job(request),
                api_key=caller.api_key,
            )
            if decision == admission.JOB:
                return self._as_job(submission_from_request(request, model=name))
            payload, body_k = self._payload(request, query.get("top_k"))
            if body_k is not None:  # checked once the inputs are read, so each gets its row
                payload.top_k = self._k(body_k)
            if admission.decide_by_images(images=payload.images, api_key=caller.api_key) == admission.JOB:
                # Too big for a synchronous call, not for the platform: it becomes a job.
                submission = submission_from_request(request, model=name, images=payload.images)
                submission.top_k = payload.top_k
                return self._as_job(submission)
        except Exception as error:
            services.record_refusal(
                caller=caller, version=version, alias=alias, route=route, error=error, request=payload
            )
            raise
        result = services.predict(
            caller=caller, model=model, version=version, alias=alias, route=route, request=payload
        )
        return Response({**result, "request_id": caller.request_id})

    _QUERY_FIELDS = PredictQuerySerializer._declared_fields

    def _query(self, request: Request) -> tuple[dict, dict]:
        """The query parameters and their errors, validated as PredictQuerySerializer would,
        without building a serializer per request (a hot path: that costs about 0.1 ms of CPU)."""
        values, errors = {}, {}
        for name, field in self._QUERY_FIELDS.items():
            raw = request.query_params.get(name)
            if raw is None or raw == "":  # a serializer treats `?top_k=` as not given
                continue
            try:
                values[name] = field.run_validation(raw)
            except serializers.ValidationError as exc:
                errors[name] = exc.detail
        return values, errors

    @staticmethod
    def _wants_job(request: Request) -> bool:
        """RFC 7240: `Prefer: respond-async` asks for a job instead of a waited-for answer."""
        preferences = request.headers.get("Prefer", "").lower().replace(" ", "").split(",")
        return any(p.split(";")[0] == "respond-async" for p in preferences)

    @staticmethod
    def _as_job(submission: JobSubmission) -> Response:
        job, created = job_submit(submission=submission)
        response = job_accepted(job, created)
        response["Preference-Applied"] = "respond-async"
        return response

    def _payload(
        self, request: Request, top_k: int | None
    ) -> tuple[services.PredictionRequest, object | None]:
        """The inputs, and the body's top_k still to check (None: the query's, or none given;
        the query's wins)."""
        k = top_k or settings.PREDICT_DEFAULT_TOP_K
        media = media_type(request)
        # Whatever the parser made (the stubs say a dict or a list): RawImageParser's bytes,
        # a QueryDict, or the JSON document.
        parsed: Any = request.data
        if media.startswith("image/"):
            if not parsed:
                raise InvalidInput("The request body is empty.", code="no_input")
            image = services.ImageInput(data=parsed, content_type=media)
            return services.PredictionRequest(images=[image], top_k=k), None
        files = request.FILES.getlist("image") if hasattr(request, "FILES") else []
        if files:
            images = [
                services.ImageInput(data=f.read(), content_type=f.content_type or "", filename=f.name)
                for f in files
            ]
            body_k = None if top_k else parsed.get("top_k")
            return services.PredictionRequest(images=images, top_k=k), body_k
        if media.startswith("multipart/"):
            raise InvalidInput("Send the image as a multipart file field named 'image'.", code="no_input")
        fields = parsed
        body_k = None
        if hasattr(fields, "items") and "top_k" in fields:  # checked by the caller, after the inputs
            body_k = None if top_k else fields["top_k"]
            fields = fields.copy()
            del fields["top_k"]
        body = self.PredictJsonInputSerializer(data=fields)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        given = [key for key in ("image", "images", "inputs") if key in data]
        if len(given) != 1:
            raise InvalidInput("Send exactly one of 'image', 'images' or 'inputs'.", code="no_input")
        if "inputs" in data:
            return services.PredictionRequest(inputs=parsed["inputs"], top_k=k), body_k
        raw = [data["image"]] if "image" in data else data["images"]
        if not raw:
            raise InvalidInput("'images' is empty.", code="no_input")
        images = [services.decode_base64_image(value, index) for index, value in enumerate(raw)]
        return services.PredictionRequest(images=images, top_k=k), body_k

    @staticmethod
    def _k(value: object) -> int:
        if value in (None, ""):
            return settings.PREDICT_DEFAULT_TOP_K
        field = serializers.IntegerField(min_value=1, max_value=settings.PREDICT_MAX_TOP_K)
        try:
            return field.run_validation(value)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"top_k": exc.detail}) from exc
