"""Reads for rollout: the policy in force and its history; agreement with its interval."""

from __future__ import annotations

from dataclasses import dataclass

from statsmodels.stats.proportion import proportion_confint

from reviewplatform.models import Deployment

from .models import PolicyVersion


def policy_current(*, deployment_id: int) -> PolicyVersion:
    """The newest published policy version of a deployment (every deployment has one)."""
    return PolicyVersion.objects.filter(deployment_id=deployment_id).latest("version")


def policy_history(*, deployment: Deployment
                   ) -> list[tuple[PolicyVersion, PolicyVersion | None]]:
    """Every version, newest first, each with the one before it (for its diff)."""
    versions = list(deployment.policy_versions.select_related("author").order_by("version"))
    pairs = [(v, versions[i - 1] if i else None) for i, v in enumerate(versions)]
    return pairs[::-1]


@dataclass(frozen=True)
class Agreement:
    agreed: int
    n: int
    low: float | None
    high: float | None

    @property
    def rate(self) -> float | None:
        return self.agreed / self.n if self.n else None


def wilson_interval(agreed: int, n: int) -> Agreement:
    if n == 0:
        return Agreement(agreed=0, n=0, low=None, high=None)
    low, high = proportion_confint(agreed, n, alpha=0.05, method="wilson")
    return Agreement(agreed=agreed, n=n, low=float(low), high=float(high))
