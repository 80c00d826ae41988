"""The REST API for API clients: submit a case, list one's cases, read one case."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import django_filters
from django import forms
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.urls import reverse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, permissions, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .api_fields import FieldsBuiltOnce, OffsetDateTimeField, offset_datetime_parse
from .api_idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from .api_pagination import CheckedCursorPagination
from .authentication import deployment_for_submit, request_api_key
from .case_follow import case_followed_new, cases_followed
from .errors import NotFound
from .intake import case_intake
from .models import Case, Decision, ReviewTask
from .openapi import errors
from .services.cases import METADATA_NOT_AN_OBJECT

# How the model's route reads beside the review reasons (ReviewTask.Reason).
MODEL_ROUTE = ("in_scope", "inside the model's scope and confident enough: the model decided")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class DecisionOut(serializers.Serializer):
    # Declared fields leave the class's attributes (DRF's metaclass): no clash with
    # Field.label and Field.source but for mypy.
    label = serializers.CharField()  # type: ignore[assignment]
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=Decision.Source.choices)
    model_version = serializers.CharField(allow_null=True,
                                          help_text="The model's version, if it predicted.")
    policy_version = serializers.IntegerField()
    decided_at = serializers.DateTimeField()


class RoutedOut(serializers.Serializer):
    at = serializers.DateTimeField()
    to = serializers.ChoiceField(choices=["model", "review"])
    reason = serializers.CharField(help_text="in_scope for the model, else the review reason.")
    why = serializers.CharField()
    rule = serializers.CharField(allow_null=True, allow_blank=True)


class TimelineOut(serializers.Serializer):
    """Each step's time, null until it happens."""

    received = serializers.DateTimeField()
    predicted = serializers.DateTimeField(allow_null=True)
    routed = RoutedOut(allow_null=True)
    claimed = serializers.DateTimeField(allow_null=True)
    decided = serializers.DateTimeField(allow_null=True)


class CaseOutputSerializer(FieldsBuiltOnce, serializers.ModelSerializer):
    """A case as `reviewplatform.case_follow.cases_followed` reads it."""

    deployment: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="slug", read_only=True)
    region: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="code", read_only=True)
    decision = serializers.SerializerMethodField()
    timeline = serializers.SerializerMethodField()

    class Meta:
        model = Case
        fields = ["id", "external_id", "deployment", "region", "captured_at", "status",
                  "width", "height", "image_deleted_at", "created_at", "decision", "timeline"]

    @extend_schema_field(DecisionOut(allow_null=True))
    def get_decision(self, case: Case) -> dict[str, Any] | None:
        decision = getattr(case, "decision", None)
        if decision is None:
            return None
        prediction = decision.prediction
        return {"label": decision.label, "source": decision.source,
                "model_version": prediction.model_version.name if prediction else None,
                "policy_version": decision.policy_version.version,
                "decided_at": decision.decided_at.isoformat()}

    @extend_schema_field(TimelineOut)
    def get_timeline(self, case: Case) -> dict[str, Any]:
        decision = getattr(case, "decision", None)
        routed: dict[str, Any] | None = None
        if decision is not None and decision.source == Decision.Source.MODEL:
            reason, words = MODEL_ROUTE
            routed = {"at": decision.decided_at.isoformat(), "to": "model", "reason": reason,
                      "why": words, "rule": decision.rule}
        elif getattr(case, "routed_at", None) is not None:
            reason = case.routed_reason  # type: ignore[attr-defined]
            routed = {"at": _iso(case.routed_at), "to": "review",  # type: ignore[attr-defined]
                      "reason": reason, "why": ReviewTask.Reason(reason).label,
                      "rule": case.routed_rule}  # type: ignore[attr-defined]
        return {"received": case.created_at.isoformat(),
                "predicted": _iso(getattr(case, "predicted_at", None)),
                "routed": routed,
                "claimed": _iso(getattr(case, "claimed_at", None)),
                "decided": _iso(decision.decided_at if decision is not None else None)}


class OffsetDateTimeFormField(forms.Field):
    """A query parameter's ISO 8601 date-time, which must carry its UTC offset."""

    default_error_messages = OffsetDateTimeField.default_error_messages

    def to_python(self, value: Any) -> datetime | None:
        if value in self.empty_values:
            return None
        try:
            return offset_datetime_parse(value)
        except ValueError as exc:
            raise forms.ValidationError(self.error_messages[str(exc)], code=str(exc)) from None


class OffsetDateTimeFilter(django_filters.Filter):
    field_class = OffsetDateTimeFormField


def _one_of(choices: list[str]) -> dict[str, str]:
    return {"invalid_choice": f"%(value)s is not one of {', '.join(choices)}"}


class CaseFilter(django_filters.FilterSet):
    """`*_after` includes its instant, `*_before` excludes it."""

    deployment = django_filters.CharFilter(field_name="deployment__slug")
    status = django_filters.ChoiceFilter(choices=Case.Status.choices,
                                         error_messages=_one_of(Case.Status.values))
    region = django_filters.CharFilter(field_name="region__code")
    captured_after = OffsetDateTimeFilter(field_name="captured_at", lookup_expr="gte")
    captured_before = OffsetDateTimeFilter(field_name="captured_at", lookup_expr="lt")
    created_after = OffsetDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = OffsetDateTimeFilter(field_name="created_at", lookup_expr="lt")
    source = django_filters.ChoiceFilter(field_name="decision__source",
                                         choices=Decision.Source.choices,
                                         error_messages=_one_of(Decision.Source.values))
    external_id = django_filters.CharFilter(field_name="external_id")

    class Meta:
        model = Case
        fields: list[str] = []


class CaseCursorPagination(CheckedCursorPagination):
    """Newest first, 50 cases a page unless asked for up to 200."""

    ordering = ("-created_at", "-id")


class CanSubmitCases(permissions.BasePermission):
    message = "this API key may not submit cases (it needs the reviewplatform.add_case permission)"

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.has_perm("reviewplatform.add_case"))


class CasesApi(generics.ListAPIView):
    """GET: the caller's cases, newest first, filtered, a page at a time. POST: submit one."""

    parser_classes = [MultiPartParser, FormParser]
    serializer_class = CaseOutputSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = CaseFilter
    pagination_class = CaseCursorPagination

    class InputSerializer(FieldsBuiltOnce, serializers.Serializer):
        deployment = serializers.SlugField()
        region = serializers.SlugField()
        captured_at = OffsetDateTimeField()
        # Its length, the metadata's shape and size: checked by `case_submit`.
        external_id = serializers.CharField()
        image = serializers.FileField(allow_empty_file=True)
        metadata = serializers.JSONField(required=False, default=dict)

        class Meta:
            ref_name = "CaseSubmit"

        def validate_metadata(self, value: Any) -> Any:
            if value is None:  # an explicit null; left out, it is {}
                raise serializers.ValidationError(METADATA_NOT_AN_OBJECT)
            return value

    def get_permissions(self) -> list[permissions.BasePermission]:
        if self.request.method == "POST":
            return [permissions.IsAuthenticated(), CanSubmitCases()]
        return [permissions.IsAuthenticated()]

    def get_queryset(self) -> QuerySet[Case]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator, no user
            return Case.objects.none()
        return cases_followed(user=cast(User, self.request.user))

    @extend_schema(tags=["cases"], summary="Your cases, newest first, a page at a time",
                   description=(
                       "The cases your user submitted (with any of its keys), newest first. "
                       "Follow `next` and `previous` as they are; `*_after` includes its "
                       "instant, `*_before` excludes it; date-times need their UTC offset. A "
                       "bad filter, `page_size` or cursor is a 400 naming it; a `deployment` "
                       "with none of your cases, an empty page, whether it exists or not."),
                   responses={200: CaseOutputSerializer(many=True), **errors(400, 401, 429)})
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=["cases"], summary="Submit a case",
                   description=(
                       "A multipart form with the image file. `metadata` is a JSON object "
                       "(as text). Refused with a 400, storing nothing: an unknown region, a "
                       "capture time in the future, an image that is not one of the accepted "
                       "formats or sizes; a 403 for a deployment the key is not scoped to, "
                       "naming the key's deployments (a deployment that does not exist is "
                       "answered the same); a 409 for an `external_id` already used; a 413 for "
                       "form fields (the image apart) over the upload limit."),
                   request={"multipart/form-data": InputSerializer},
                   parameters=[IDEMPOTENCY_KEY_PARAMETER],
                   responses={201: CaseOutputSerializer,
                              **errors(400, 401, 403, 409, 413, 415, 429)})
    def post(self, request: Request) -> Response:
        return idempotent(self, request, lambda: self._submit(request))

    def _submit(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        deployment = deployment_for_submit(slug=values["deployment"],
                                           api_key=request_api_key(request))
        case = case_intake(
            deployment=deployment, region_code=values["region"], image=values["image"],
            captured_at=values["captured_at"], external_id=values["external_id"],
            metadata=values["metadata"], submitted_by=cast(User, request.user),
        )
        case = case_followed_new(case)
        return Response(CaseOutputSerializer(case).data, status=status.HTTP_201_CREATED,
                        headers={"Location": reverse("api-case-detail", args=[case.pk])})


class CaseDetailApi(APIView):
    @extend_schema(tags=["cases"], summary="One of your cases",
                   description="Another client's case is a 404, as one that does not exist.",
                   responses={200: CaseOutputSerializer, **errors(401, 404, 429)})
    def get(self, request: Request, case_id: int) -> Response:
        case = cases_followed(user=cast(User, request.user)).filter(pk=case_id).first()
        if case is None:
            raise NotFound(f"case {case_id} does not exist or is not yours")
        return Response(CaseOutputSerializer(case).data)
