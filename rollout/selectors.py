"""Reads for rollout: the policy in force and its history."""

from __future__ import annotations

from reviewplatform.models import Deployment

from .models import PolicyVersion


def policy_current(*, deployment_id: int) -> PolicyVersion:
    """The newest published policy version of a deployment (every deployment has one)."""
    return PolicyVersion.objects.filter(deployment_id=deployment_id).latest("version")


def policy_previous(*, version: PolicyVersion) -> PolicyVersion | None:
    """The version published just before this one (None for the first): its diff's base."""
    return (PolicyVersion.objects.filter(deployment_id=version.deployment_id,
                                         version__lt=version.version)
            .order_by("-version").first())


def policy_history(*, deployment: Deployment
                   ) -> list[tuple[PolicyVersion, PolicyVersion | None]]:
    """Every version, newest first, each with the one before it (for its diff)."""
    versions = list(deployment.policy_versions.select_related("author").order_by("version"))
    pairs = [(v, versions[i - 1] if i else None) for i, v in enumerate(versions)]
    return pairs[::-1]
