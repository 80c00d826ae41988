"""Staff-only REST API of the rollout: every action of the rollout page, one thin view each.

All under /api/v1/deployments/<slug>/policy/. Bad input answers 4xx with the API's error
envelope, {"code": ..., "message": ..., "fields": {...}}, and changes nothing.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import User
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from reviewplatform.api_fields import OffsetDateTimeField
from reviewplatform.errors import NotFound
from reviewplatform.models import Deployment
from reviewplatform.openapi import errors

from . import guardrails, scope, selectors, services
from .api_shapes import (
    GuardrailsOut,
    PolicyEvidenceOut,
    PolicyHistoryOut,
    PolicyVersionOut,
    ScheduledChangeOut,
    ScheduledChangesOut,
)
from .models import PolicyVersion, ScheduledChange
from .views import ADMIN_PERM, PUBLISH_PERM

TAGS = ["rollout (staff)"]
# What any staff endpoint may answer besides its own errors: no key, not staff, no such
# deployment, too many requests.
READ_ERRORS = errors(401, 403, 404, 429)
WRITE_ERRORS = errors(400, 401, 403, 404, 415, 429)


class CanSteerRollout(permissions.BasePermission):
    """What the rollout page asks of its users: reading needs the view permission, a change
    (or its evidence) the publish permission. Being staff alone is not enough: a model admin
    is staff, and steers models, not rollouts."""

    message = (f"the rollout API is for rollout admins: reading needs {ADMIN_PERM}, a change "
               f"{PUBLISH_PERM}")

    def has_permission(self, request: Request, view: Any) -> bool:
        perm = ADMIN_PERM if request.method in permissions.SAFE_METHODS else PUBLISH_PERM
        return bool(request.user and request.user.has_perm(perm))


class StaffApi(APIView):
    permission_classes = [permissions.IsAdminUser, CanSteerRollout]

    def deployment(self, slug: str) -> Deployment:
        deployment = Deployment.objects.filter(slug=slug).first()
        if deployment is None:
            raise NotFound(f"there is no deployment {slug!r}")
        return deployment


def version_out(version: PolicyVersion, *, previous: PolicyVersion | None) -> dict[str, Any]:
    """A version as the API shows it; `diff` is against `previous`, the version before it
    (None only for a deployment's first version), as on the rollout page."""
    return {
        "version": version.version, **version.spec(), "kind": version.kind,
        "author": version.author.username if version.author else None,
        "reason": version.reason, "override_reason": version.override_reason,
        "copied_from": version.copied_from, "created_at": version.created_at.isoformat(),
        "scope_in_words": scope.policy_describe(version.spec()),
        "diff": scope.policy_diff(previous.spec() if previous else None, version.spec()),
    }


def version_with_diff(version: PolicyVersion) -> dict[str, Any]:
    return version_out(version, previous=selectors.policy_previous(version=version))


class PolicyInput(serializers.Serializer):
    stage = serializers.CharField()
    rules = serializers.JSONField()
    confidence_threshold = serializers.FloatField()
    audit_rate = serializers.FloatField()
    guardrails = serializers.JSONField(required=False, default=None)
    paused_cells = serializers.JSONField(required=False, default=None)


class PolicyApi(StaffApi):
    """GET: the current policy. POST: publish a change (through the evidence gate)."""

    class InputSerializer(PolicyInput):
        reason = serializers.CharField()
        override_reason = serializers.CharField(required=False, default="", allow_blank=True)

        class Meta:
            ref_name = "PolicyChange"

    @extend_schema(tags=TAGS, summary="The current policy",
                   responses={200: PolicyVersionOut, **READ_ERRORS})
    def get(self, request: Request, slug: str) -> Response:
        deployment = self.deployment(slug)
        return Response(version_with_diff(selectors.policy_current(deployment_id=deployment.pk)))

    @extend_schema(tags=TAGS, summary="Publish a policy change, through the evidence gate",
                   request=InputSerializer, responses={201: PolicyVersionOut, **WRITE_ERRORS})
    def post(self, request: Request, slug: str) -> Response:
        deployment = self.deployment(slug)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.policy_change(deployment=deployment,
                                         actor=cast(User, request.user), **data.validated_data)
        return Response(version_with_diff(version), status=status.HTTP_201_CREATED)


class PolicyPauseApi(StaffApi):
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField()

        class Meta:
            ref_name = "PolicyPause"

    @extend_schema(tags=TAGS, summary="Pause automation: every case goes to review",
                   request=InputSerializer,
                   responses={201: PolicyVersionOut, **WRITE_ERRORS, **errors(409)})
    def post(self, request: Request, slug: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.policy_pause(deployment=self.deployment(slug),
                                        actor=cast(User, request.user), **data.validated_data)
        return Response(version_with_diff(version), status=status.HTTP_201_CREATED)


class PolicyRollbackApi(StaffApi):
    class InputSerializer(serializers.Serializer):
        version = serializers.IntegerField(min_value=1)
        reason = serializers.CharField()
        override_reason = serializers.CharField(required=False, default="", allow_blank=True)

        class Meta:
            ref_name = "PolicyRollback"

    @extend_schema(tags=TAGS, summary="Publish a copy of an earlier version",
                   request=InputSerializer, responses={201: PolicyVersionOut, **WRITE_ERRORS})
    def post(self, request: Request, slug: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.policy_rollback(deployment=self.deployment(slug),
                                           actor=cast(User, request.user),
                                           **data.validated_data)
        return Response(version_with_diff(version), status=status.HTTP_201_CREATED)


class PolicyHistoryApi(StaffApi):
    @extend_schema(tags=TAGS, summary="Every version, each with its diff",
                   responses={200: PolicyHistoryOut, **READ_ERRORS})
    def get(self, request: Request, slug: str) -> Response:
        deployment = self.deployment(slug)
        return Response({"versions": [
            version_out(version, previous=previous)
            for version, previous in selectors.policy_history(deployment=deployment)]})


class PolicyEvidenceApi(StaffApi):
    """POST a proposed policy: its evidence and the replay of recent cases under it."""

    @extend_schema(tags=TAGS, summary="Evidence for a proposed policy (changes nothing)",
                   request=PolicyInput, responses={200: PolicyEvidenceOut, **WRITE_ERRORS})
    def post(self, request: Request, slug: str) -> Response:
        deployment = self.deployment(slug)
        data = PolicyInput(data=request.data)
        data.is_valid(raise_exception=True)
        current = selectors.policy_current(deployment_id=deployment.pk)
        values = data.validated_data
        spec = services.policy_spec_validate(
            deployment=deployment, stage=values["stage"], rules=values["rules"],
            confidence_threshold=values["confidence_threshold"],
            audit_rate=values["audit_rate"],
            guardrails=current.guardrails if values["guardrails"] is None
            else values["guardrails"],
            paused_cells=values["paused_cells"], current=current.spec())
        evidence = services.policy_evidence(deployment=deployment, proposed=spec)
        return Response({"proposed": spec, "scope_in_words": scope.policy_describe(spec),
                         "diff": scope.policy_diff(current.spec(), spec),
                         "evidence": evidence.as_dict()})


class PolicyGuardrailsApi(StaffApi):
    @extend_schema(tags=TAGS, summary="The guardrails' figures, per cell of rule and region",
                   responses={200: GuardrailsOut, **READ_ERRORS})
    def get(self, request: Request, slug: str) -> Response:
        reports = guardrails.guardrails_check(deployment=self.deployment(slug))
        return Response({"cells": [
            {"rule": r.rule, "region": r.region, "paused": r.paused,
             "since": r.since.isoformat() if r.since else None, "audit_rate": r.audit_rate,
             "agreement": {"agreed": r.agreement.agreed, "n": r.agreement.n,
                           "low": r.agreement.low, "high": r.agreement.high,
                           "verdict": r.agreement_verdict,
                           "fail_evidence": r.agreement_test.fail_evidence,
                           "pass_evidence": r.agreement_test.pass_evidence,
                           "answers_to_prove": r.agreement_test.to_prove},
             "low_confidence_reviews": {"agreed": r.unsure.agreed, "n": r.unsure.n},
             "out_of_domain": {"count": r.ood_recent.agreed, "n": r.ood_recent.n,
                               "baseline": r.ood_baseline, "limit": r.ood_limit,
                               "fail_evidence": r.ood_test.fail_evidence if r.ood_test else None,
                               "verdict": r.ood_verdict}}
            for r in reports]})


def scheduled_out(change: ScheduledChange) -> dict[str, Any]:
    return {"id": change.pk, "effective_at": change.effective_at.isoformat(),
            "stage": change.stage, "rules": change.rules,
            "confidence_threshold": change.confidence_threshold,
            "audit_rate": change.audit_rate, "reason": change.reason, "status": change.status,
            "status_note": change.status_note,
            "published_version": (change.published_version.version
                                  if change.published_version else None)}


class PolicyScheduleApi(StaffApi):
    class InputSerializer(PolicyInput):
        effective_at = OffsetDateTimeField()
        reason = serializers.CharField()

        class Meta:
            ref_name = "PolicySchedule"

    @extend_schema(tags=TAGS, summary="Scheduled changes",
                   responses={200: ScheduledChangesOut, **READ_ERRORS})
    def get(self, request: Request, slug: str) -> Response:
        changes = (self.deployment(slug).scheduled_changes.select_related("published_version")
                   .order_by("-effective_at"))
        return Response({"scheduled": [scheduled_out(c) for c in changes]})

    @extend_schema(tags=TAGS, summary="Schedule a policy change for a later time",
                   request=InputSerializer, responses={201: ScheduledChangeOut, **WRITE_ERRORS})
    def post(self, request: Request, slug: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        values.pop("paused_cells", None)
        change = services.policy_schedule(deployment=self.deployment(slug),
                                          actor=cast(User, request.user), **values)
        return Response(scheduled_out(change), status=status.HTTP_201_CREATED)


class PolicyScheduleCancelApi(StaffApi):
    @extend_schema(tags=TAGS, summary="Cancel a pending scheduled change", request=None,
                   responses={200: ScheduledChangeOut, **READ_ERRORS})
    def post(self, request: Request, slug: str, change_id: int) -> Response:
        change = services.policy_schedule_cancel(change_id=change_id,
                                                 deployment=self.deployment(slug),
                                                 actor=cast(User, request.user))
        return Response(scheduled_out(change))
