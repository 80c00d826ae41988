"""Reads for rollout: the policy in force and the agreement report. The database counts."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, F, Q

from inference.models import Prediction
from reviewplatform.models import Case, Decision, Deployment
from reviewplatform.stats import Proportion, proportion

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
class DeploymentReport:
    cases: int
    by_status: dict[str, int]
    decisions_by_source: dict[str, int]
    agreement: Proportion
    labels: list[str]
    confusion: list[list[int]]  # rows: human label, columns: model label


def deployment_report(*, deployment: Deployment) -> DeploymentReport:
    """Counts, champion-vs-human agreement and the confusion matrix, aggregated in the database.

    Agreement is measured on cases that both saw: a human decision with one of the
    deployment's labels, and an answer from the current champion.
    """
    labels = list(deployment.labels)
    by_status = dict(Case.objects.filter(deployment=deployment).values_list("status")
                     .annotate(n=Count("id")).order_by())
    by_source = dict(Decision.objects.filter(case__deployment=deployment).values_list("source")
                     .annotate(n=Count("id")).order_by())
    cells = (Prediction.objects
             .filter(case__deployment=deployment, model_version__is_champion=True,
                     status=Prediction.Status.OK,
                     case__decision__source=Decision.Source.HUMAN,
                     case__decision__label__in=labels)
             .values_list("case__decision__label", "label")
             .annotate(n=Count("id"),
                       agreed=Count("id", filter=Q(label=F("case__decision__label"))))
             .order_by())
    index = {label: i for i, label in enumerate(labels)}
    confusion = [[0] * len(labels) for _ in labels]
    agreed = total = 0
    for human, model, n, same in cells:
        total += n
        agreed += same
        if model in index:
            confusion[index[human]][index[model]] += n
    return DeploymentReport(
        cases=sum(by_status.values()), by_status=by_status, decisions_by_source=by_source,
        agreement=proportion(agreed, total), labels=labels, confusion=confusion,
    )
