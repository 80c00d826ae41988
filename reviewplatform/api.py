"""The REST API for API clients: submit a case, read its status and decision."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import User
from django.urls import reverse
from rest_framework import permissions, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .api_fields import OffsetDateTimeField
from .errors import NotFound, ServiceError
from .intake import case_intake
from .models import Case, Deployment
from .selectors import case_get_for


class CaseOutputSerializer(serializers.ModelSerializer):
    deployment: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="slug", read_only=True)
    region: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="code", read_only=True)
    decision = serializers.SerializerMethodField()

    class Meta:
        model = Case
        fields = ["id", "external_id", "deployment", "region", "captured_at", "status",
                  "width", "height", "created_at", "decision"]

    def get_decision(self, case: Case) -> dict[str, Any] | None:
        decision = getattr(case, "decision", None)
        if decision is None:
            return None
        return {"label": decision.label, "source": decision.source,
                "policy_version": decision.policy_version.version,
                "decided_at": decision.decided_at.isoformat()}


class CanSubmitCases(permissions.BasePermission):
    message = "this API key may not submit cases (it needs the reviewplatform.add_case permission)"

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.has_perm("reviewplatform.add_case"))


class CaseSubmitApi(APIView):
    parser_classes = [MultiPartParser, FormParser]
    permission_classes = [permissions.IsAuthenticated, CanSubmitCases]

    class InputSerializer(serializers.Serializer):
        deployment = serializers.SlugField()
        region = serializers.SlugField()
        captured_at = OffsetDateTimeField()
        # Its length, the metadata's shape and size: checked by `case_submit`.
        external_id = serializers.CharField()
        image = serializers.FileField(allow_empty_file=True)
        metadata = serializers.JSONField(required=False, default=dict)

    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        deployment = Deployment.objects.filter(slug=values["deployment"]).first()
        if deployment is None:
            raise ServiceError(f"unknown deployment {values['deployment']!r}",
                               field="deployment")
        case = case_intake(
            deployment=deployment, region_code=values["region"], image=values["image"],
            captured_at=values["captured_at"], external_id=values["external_id"],
            metadata=values["metadata"], submitted_by=cast(User, request.user),
        )
        case = Case.objects.select_related("deployment", "region").get(pk=case.pk)
        return Response(CaseOutputSerializer(case).data, status=status.HTTP_201_CREATED,
                        headers={"Location": reverse("api-case-detail", args=[case.pk])})


class CaseDetailApi(APIView):
    def get(self, request: Request, case_id: int) -> Response:
        case = case_get_for(case_id=case_id, user=cast(User, request.user))
        if case is None:
            raise NotFound(f"case {case_id} does not exist or is not yours")
        return Response(CaseOutputSerializer(case).data)
