"""The staff API's way to onboard a team's model: `POST /api/v1/deployments/`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, cast

from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.permissions import REGISTER_PERM, is_model_admin

from .onboarding import Onboarded, RegionIn, deployment_onboard
from .openapi import errors


class CanOnboard(permissions.BasePermission):
    message = ("onboarding a model needs a staff account with the "
               f"{REGISTER_PERM} permission (learners are pickles that run code when loaded)")

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_model_admin(request.user)


class RegionField(serializers.Serializer):
    code = serializers.SlugField()
    name = serializers.CharField(max_length=200)
    timezone = serializers.CharField(max_length=64, help_text="An IANA name: Europe/Oslo.")


class JsonListField(serializers.JSONField):
    """A JSON list sent as the text of a multipart field."""

    def __init__(self, child: serializers.Field, **kwargs: Any) -> None:
        self.child = child
        super().__init__(binary=True, **kwargs)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError:
                self.fail("invalid")
        if not isinstance(data, list):
            raise serializers.ValidationError("a JSON list")
        return serializers.ListField(child=self.child).run_validation(data)


class OnboardIn(serializers.Serializer):
    slug = serializers.CharField(max_length=49)
    name = serializers.CharField(max_length=200)
    learner = serializers.FileField(help_text="The exported learner (learn.export()).")
    reference = serializers.FileField(help_text="A zip of one folder per label of "
                                                "training-like images (at least 10).")
    regions = JsonListField(RegionField(), help_text='JSON: [{"code": "north", "name": '
                                                     '"North", "timezone": "Europe/Oslo"}]')
    client = serializers.CharField(max_length=150, help_text=(
        "The API client account the new key acts as; created if new."))
    labels = JsonListField(serializers.CharField(max_length=100), required=False,
                           help_text="The learner's labels in display order (JSON list).")
    model_name = serializers.CharField(max_length=100, required=False, default="v1")
    image_retention_days = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=1, max_value=36_500,
        help_text="Delete a case's image this many days after its decision (its decision, "
                  "reviews and statistics stay). Left out: images are kept.")

    class Meta:
        ref_name = "DeploymentOnboard"


class OnboardedOut(serializers.Serializer):
    deployment = serializers.DictField()
    champion = serializers.DictField()
    reference = serializers.DictField()
    api_key = serializers.DictField(help_text="`key` is shown only here.")


def onboarded_out(done: Onboarded) -> dict[str, Any]:
    deployment = done.deployment
    return {
        "deployment": {"slug": deployment.slug, "name": deployment.name,
                       "labels": deployment.labels, "stage": "shadow",
                       "image_retention_days": deployment.image_retention_days,
                       "regions": [{"code": r.code, "name": r.name, "timezone": r.timezone}
                                   for r in deployment.regions.order_by("code")]},
        "champion": {"name": done.champion.name, "sha256": done.champion.sha256,
                     "labels": done.champion.labels},
        "reference": {"size": done.reference.size, "by_label": done.reference.by_label},
        "api_key": {"prefix": done.api_key.prefix, "client": done.api_key.user.username,
                    "key": done.api_key_secret},
    }


def learner_file(upload: UploadedFile, folder: str) -> Path:
    """The uploaded learner as a file on disk (small uploads arrive in memory)."""
    path = Path(folder) / "export.pkl"
    with path.open("wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    return path


class DeploymentsApi(APIView):
    permission_classes = [permissions.IsAuthenticated, CanOnboard]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(tags=["rollout (staff)"], summary="Onboard a model as a new deployment",
                   description=(
                       "From an exported fastai learner: the deployment (labels from its "
                       "vocabulary, in the order given), its regions, its first policy (shadow), "
                       "the learner as champion, the reference set fitting the input limits, and "
                       "an API key for the client, shown only in this answer. A refusal at any "
                       "step stores nothing. docs/own-model.md walks through it."),
                   request={"multipart/form-data": OnboardIn},
                   responses={201: OnboardedOut, **errors(400, 401, 403, 409, 415, 429)})
    def post(self, request: Request) -> Response:
        data = OnboardIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        with tempfile.TemporaryDirectory(prefix="onboard-") as folder:
            done = deployment_onboard(
                slug=values["slug"], name=values["name"],
                learner=learner_file(values["learner"], folder),
                regions=[RegionIn(**region) for region in values["regions"]],
                reference=values["reference"], client=values["client"],
                labels=values.get("labels"), model_name=values["model_name"],
                image_retention_days=values["image_retention_days"],
                actor=cast(User, request.user))
        return Response(onboarded_out(done), status=status.HTTP_201_CREATED)
