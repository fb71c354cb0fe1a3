"""Rollouts API: start a canary split on an alias, watch it, promote or abort it.

Who may do what is the registry's rule for aliases: anyone who sees the model reads its
rollouts; its owner, maintainers and admins start, promote and abort them."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from apps.accounts.authenticated import AuthenticatedRequest
from apps.core.exceptions import InvalidInput
from apps.core.http import query_data
from apps.core.pagination import LimitOffsetPagination, paginated_response
from apps.core.schema import error_responses
from apps.registry import selectors as registry_selectors
from apps.registry.apis.base import RegistryApi, visible_model, writable_model
from apps.registry.models import MLModel
from apps.rollouts import pairing, selectors, services
from apps.rollouts.models import Rollout, RolloutCandidate


class CandidateOutputSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number")

    class Meta:
        model = RolloutCandidate
        fields = ["version", "weight"]


class RolloutOutputSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name")
    alias = serializers.CharField(source="alias_name")
    primary = serializers.IntegerField(source="primary.number")
    primary_weight = serializers.SerializerMethodField()
    candidates = CandidateOutputSerializer(many=True)
    promoted_to = serializers.IntegerField(source="promoted_to.number", default=None)
    shadow = serializers.IntegerField(source="shadow.number", default=None, help_text="The shadow version.")
    shadow_status = serializers.SerializerMethodField(
        help_text="active, stopped (by its guard rail: the version is flagged, see shadow_reason), "
        "ended (with the rollout), or none."
    )
    created_by = serializers.CharField(source="created_by.username", default=None)
    ended_by = serializers.CharField(source="ended_by.username", default=None)

    class Meta:
        model = Rollout
        fields = [
            "id",
            "model",
            "alias",
            "status",
            "reason",
            "primary",
            "primary_weight",
            "candidates",
            "promoted_to",
            "max_error_rate",
            "max_latency_p95_ms",
            "min_requests",
            "shadow",
            "shadow_percent",
            "shadow_status",
            "shadow_reason",
            "shadow_dropped",
            "max_shadow_disagreement",
            "shadow_min_pairs",
            "created_by",
            "created_at",
            "ended_by",
            "ended_at",
        ]

    def get_shadow_status(self, obj: Rollout) -> str:
        if obj.shadow_id is None:
            return "none"
        if obj.shadow_stopped_at:
            return "stopped"
        return "active" if obj.is_active else "ended"

    def get_primary_weight(self, obj: Rollout) -> int:
        return 100 - sum(c.weight for c in obj.candidates.all())


class RolloutDetailOutputSerializer(RolloutOutputSerializer):
    requests = serializers.SerializerMethodField(help_text="Requests answered per version number.")

    class Meta(RolloutOutputSerializer.Meta):
        fields = [*RolloutOutputSerializer.Meta.fields, "requests"]

    def get_requests(self, obj: Rollout) -> dict[str, int]:
        return selectors.request_counts(obj)


class CandidateInputSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1)
    weight = serializers.IntegerField(help_text="Percent of routing keys, 1-99; the primary keeps the rest.")


class RolloutListStartApi(RegistryApi):
    pagination_class = LimitOffsetPagination  # what its GET answers; the schema documents it

    class RolloutStartInputSerializer(serializers.Serializer):
        alias = serializers.SlugField(max_length=64, default="production")
        candidates = CandidateInputSerializer(many=True, default=list, help_text="Empty for a shadow alone.")
        max_error_rate = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True)
        max_latency_p95_ms = serializers.FloatField(min_value=0, required=False, allow_null=True)
        min_requests = serializers.IntegerField(min_value=1, default=100)
        shadow_version = serializers.IntegerField(
            min_value=1,
            required=False,
            help_text="A version that answers the primary's requests again, off the request path.",
        )
        shadow_percent = serializers.IntegerField(
            required=False, help_text="Percent of the primary's requests mirrored, 1-100 (default 100)."
        )
        max_shadow_disagreement = serializers.FloatField(
            min_value=0, max_value=1, required=False, allow_null=True
        )
        shadow_min_pairs = serializers.IntegerField(min_value=1, default=100)

    @extend_schema(
        operation_id="rollouts_list",
        responses={200: RolloutOutputSerializer(many=True), **error_responses(404)},
    )
    def get(self, request: AuthenticatedRequest, name: str) -> Response:
        model = visible_model(request, name)
        return paginated_response(request, self, selectors.rollout_list(model=model), RolloutOutputSerializer)

    @extend_schema(
        operation_id="rollouts_start",
        request=RolloutStartInputSerializer,
        responses={201: RolloutDetailOutputSerializer, **error_responses(400, 403, 404, 409)},
        description=(
            "Split the alias between its version (the primary) and candidates by weight, sticky "
            "per routing key. Every process routes within LOCAL_CACHE_SECONDS."
        ),
    )
    def post(self, request: AuthenticatedRequest, name: str) -> Response:
        model = writable_model(request, name)
        body = self.RolloutStartInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        candidates = [
            (registry_selectors.version_get(model=model, number=c["version"]), c["weight"])
            for c in data["candidates"]
        ]
        guards = services.Guards(
            max_error_rate=data.get("max_error_rate"),
            max_latency_p95_ms=data.get("max_latency_p95_ms"),
            min_requests=data["min_requests"],
            max_shadow_disagreement=data.get("max_shadow_disagreement"),
            shadow_min_pairs=data["shadow_min_pairs"],
        )
        rollout = services.rollout_start(
            model=model,
            alias_name=data["alias"],
            candidates=candidates,
            guards=guards,
            shadow=self._shadow(model, data),
            user=request.user,
        )
        rollout = selectors.rollout_get(model=model, rollout_id=rollout.pk)
        return Response(RolloutDetailOutputSerializer(rollout).data, status=status.HTTP_201_CREATED)

    @staticmethod
    def _shadow(model: MLModel, data: dict) -> services.Shadow | None:
        if "shadow_version" not in data:
            if "shadow_percent" in data:
                raise InvalidInput("shadow_percent needs a shadow_version.", code="invalid_shadow")
            return None
        version = registry_selectors.version_get(model=model, number=data["shadow_version"])
        return services.Shadow(version=version, percent=data.get("shadow_percent", 100))


class RolloutDetailApi(RegistryApi):
    @extend_schema(
        operation_id="rollouts_retrieve",
        responses={200: RolloutDetailOutputSerializer, **error_responses(404)},
    )
    def get(self, request: AuthenticatedRequest, name: str, rollout_id: int) -> Response:
        model = visible_model(request, name)
        rollout = selectors.rollout_get(model=model, rollout_id=rollout_id)
        return Response(RolloutDetailOutputSerializer(rollout).data)


class RolloutPromoteApi(RegistryApi):
    class PromoteInputSerializer(serializers.Serializer):
        version = serializers.IntegerField(
            min_value=1, required=False, help_text="The candidate to promote (required if several)."
        )

    @extend_schema(
        operation_id="rollouts_promote",
        request=PromoteInputSerializer,
        responses={200: RolloutDetailOutputSerializer, **error_responses(400, 403, 404, 409)},
    )
    def post(self, request: AuthenticatedRequest, name: str, rollout_id: int) -> Response:
        model = writable_model(request, name)
        rollout = selectors.rollout_get(model=model, rollout_id=rollout_id)
        body = self.PromoteInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        number = body.validated_data.get("version")
        version = registry_selectors.version_get(model=model, number=number) if number else None
        services.rollout_promote(rollout=rollout, version=version, user=request.user)
        rollout = selectors.rollout_get(model=model, rollout_id=rollout_id)
        return Response(RolloutDetailOutputSerializer(rollout).data)


class RolloutAbortApi(RegistryApi):
    class AbortInputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=1000, required=False, allow_blank=True)

    @extend_schema(
        operation_id="rollouts_abort",
        request=AbortInputSerializer,
        responses={200: RolloutDetailOutputSerializer, **error_responses(400, 403, 404, 409)},
    )
    def post(self, request: AuthenticatedRequest, name: str, rollout_id: int) -> Response:
        model = writable_model(request, name)
        rollout = selectors.rollout_get(model=model, rollout_id=rollout_id)
        body = self.AbortInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.rollout_abort(
            rollout=rollout, user=request.user, reason=body.validated_data.get("reason", "")
        )
        rollout = selectors.rollout_get(model=model, rollout_id=rollout_id)
        return Response(RolloutDetailOutputSerializer(rollout).data)


class VersionStatsOutputSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    route = serializers.CharField(help_text="primary, canary or shadow.")
    requests = serializers.IntegerField()
    failed = serializers.IntegerField()
    error_rate = serializers.FloatField()
    latency_p50_ms = serializers.FloatField(allow_null=True)
    latency_p95_ms = serializers.FloatField(allow_null=True)
    top1 = serializers.DictField(child=serializers.IntegerField(), help_text="Top-1 class: answers.")
    mean_top1_score = serializers.FloatField(allow_null=True)
    sampled = serializers.BooleanField(help_text="Only the latest ROLLOUT_STATS_MAX_ROWS rows were read.")


class ShadowPairsOutputSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    shadow_rows = serializers.IntegerField(
        help_text="Shadow rows read in the window (the latest ROLLOUT_STATS_MAX_ROWS)."
    )
    pairs = serializers.IntegerField(
        help_text="Of them, those whose primary row was found (same request id and index)."
    )
    comparable = serializers.IntegerField(help_text="Pairs where both versions answered with classes.")
    agreeing = serializers.IntegerField()
    agreement = serializers.FloatField(allow_null=True, help_text="Top-1 agreement: agreeing / comparable.")
    mean_abs_score_diff = serializers.FloatField(
        allow_null=True,
        help_text="Mean |primary's top-1 score - the shadow's score for that class| (0 outside its top k).",
    )
    dropped = serializers.IntegerField(help_text="Sampled inputs not shadowed, over the rollout's life.")


class RolloutComparisonApi(RegistryApi):
    class WindowSerializer(serializers.Serializer):
        since = serializers.DateTimeField(required=False)
        until = serializers.DateTimeField(required=False)

    @extend_schema(
        operation_id="rollouts_comparison",
        parameters=[
            OpenApiParameter("since", str, description="ISO 8601; default: the rollout's start."),
            OpenApiParameter("until", str, description="ISO 8601 (exclusive); default: now or its end."),
        ],
        responses={
            200: inline_serializer(
                "RolloutComparison",
                {
                    "rollout": serializers.IntegerField(),
                    "versions": VersionStatsOutputSerializer(many=True),
                    "shadow": ShadowPairsOutputSerializer(allow_null=True),
                },
            ),
            **error_responses(400, 404),
        },
    )
    def get(self, request: AuthenticatedRequest, name: str, rollout_id: int) -> Response:
        model = visible_model(request, name)
        rollout = selectors.rollout_get(model=model, rollout_id=rollout_id)
        window = self.WindowSerializer(data=query_data(request))
        window.is_valid(raise_exception=True)
        bounds = {k: window.validated_data.get(k) for k in ("since", "until")}
        versions = selectors.comparison(rollout, **bounds)
        data = [
            {**VersionStatsOutputSerializer(v).data, "error_rate": round(v.error_rate, 6)} for v in versions
        ]
        return Response({"rollout": rollout.pk, "versions": data, "shadow": self._pairs(rollout, bounds)})

    @staticmethod
    def _pairs(rollout: Rollout, bounds: dict) -> dict | None:
        if rollout.shadow is None:
            return None
        stats = pairing.paired_stats(rollout, **bounds)
        fields = ("shadow_rows", "pairs", "comparable", "agreeing", "agreement", "mean_abs_score_diff")
        pairs = {name: getattr(stats, name) for name in fields}
        return {"version": rollout.shadow.number, **pairs, "dropped": rollout.shadow_dropped}
