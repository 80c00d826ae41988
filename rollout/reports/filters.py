"""The report's filters, parsed once from the query string, and the rows they select."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import FilteredRelation, Q, QuerySet
from django.http import QueryDict
from django.utils import timezone

from inference.models import ModelVersion, Prediction
from reviewplatform.errors import ServiceError
from reviewplatform.models import Case, Decision, Deployment, ReviewTask

from ..models import Stage


@dataclass(frozen=True)
class ReportFilters:
    """Which decisions a report counts.

    The period is on the capture time (inclusive local dates, in the server's zone): the
    domain-shift view is about when the images were taken. `model_version_id` is the model
    compared with humans (the champion unless another is chosen); `stage` is the stage of the
    policy version that routed the decision; `reason` the reason of the review task behind a
    human decision.
    """

    deployment: Deployment
    model_version_id: int | None = None
    date_from: date | None = None
    date_to: date | None = None
    region: str = ""
    stage: str = ""
    reason: str = ""

    @property
    def start(self) -> datetime | None:
        if self.date_from is None:
            return None
        return timezone.make_aware(datetime.combine(self.date_from, time.min))

    @property
    def end(self) -> datetime | None:
        if self.date_to is None:
            return None
        return timezone.make_aware(datetime.combine(self.date_to + timedelta(days=1), time.min))

    def on_case(self, prefix: str = "case__") -> Q:
        """The period and region conditions, on the case reached through `prefix`."""
        conditions = Q()
        if self.start is not None:
            conditions &= Q(**{f"{prefix}captured_at__gte": self.start})
        if self.end is not None:
            conditions &= Q(**{f"{prefix}captured_at__lt": self.end})
        if self.region:
            conditions &= Q(**{f"{prefix}region__code": self.region})
        return conditions

    def query(self) -> dict[str, Any]:
        """The filters as query-string values (links keep them)."""
        values = {"model": self.model_version_id, "from": self.date_from, "to": self.date_to,
                  "region": self.region, "stage": self.stage, "reason": self.reason}
        return {k: str(v) for k, v in values.items() if v not in (None, "")}


# The dates a period may name: the day after its last one must still be a date.
FIRST_DATE, LAST_DATE = date(1, 1, 2), date(9999, 12, 30)


def _date(value: str, field: str) -> date | None:
    if not value:
        return None
    try:
        parsed = date.fromisoformat(value)
    except ValueError as exc:
        raise ServiceError(f"{field} must be a date like 2026-05-01", field=field) from exc
    if not FIRST_DATE <= parsed <= LAST_DATE:
        raise ServiceError(f"{field} must be a date from {FIRST_DATE} to {LAST_DATE}",
                           field=field)
    return parsed


def report_filters_parse(*, deployment: Deployment, params: QueryDict) -> ReportFilters:
    """Validate the query string; unknown values are refused with the field at fault."""
    region = params.get("region", "")
    if region and not deployment.regions.filter(code=region).exists():
        raise ServiceError(f"unknown region {region!r}", field="region")
    stage = params.get("stage", "")
    if stage and stage not in Stage.values:
        raise ServiceError(f"unknown stage {stage!r}", field="stage")
    reason = params.get("reason", "")
    if reason and reason not in ReviewTask.Reason.values:
        raise ServiceError(f"unknown reason {reason!r}", field="reason")
    versions = ModelVersion.objects.filter(deployment=deployment)
    model = params.get("model", "")
    if model:
        try:
            model_id: int | None = versions.get(pk=int(model)).pk
        except (ValueError, ModelVersion.DoesNotExist) as exc:
            raise ServiceError(f"unknown model version {model!r}", field="model") from exc
    else:
        model_id = versions.filter(is_champion=True).values_list("pk", flat=True).first()
    date_from = _date(params.get("from", ""), "from")
    date_to = _date(params.get("to", ""), "to")
    if date_from and date_to and date_from > date_to:
        raise ServiceError("from must not be after to", field="from")
    return ReportFilters(deployment=deployment, model_version_id=model_id, date_from=date_from,
                         date_to=date_to, region=region, stage=stage, reason=reason)


def decisions_filtered(f: ReportFilters) -> QuerySet[Decision]:
    """The deployment's decisions under the filters, each joined (left) to the compared
    model version's prediction as `mp`."""
    qs = Decision.objects.filter(case__deployment=f.deployment)
    qs = qs.filter(f.on_case())
    if f.stage:
        qs = qs.filter(policy_version__stage=f.stage)
    if f.reason:
        qs = qs.filter(review__task__reason=f.reason)
    return qs.alias(mp=FilteredRelation(
        "case__predictions",
        condition=Q(case__predictions__model_version_id=f.model_version_id or 0,
                    case__predictions__status=Prediction.Status.OK)))


def compared(f: ReportFilters) -> Q:
    """On `decisions_filtered`: a human decided with one of the labels and the compared model
    answered, so both saw the case."""
    return (Q(source=Decision.Source.HUMAN, label__in=list(f.deployment.labels))
            & Q(mp__label__isnull=False))


def report_cases(f: ReportFilters) -> QuerySet[Case]:
    """The deployment's cases in the filters' period and region."""
    return Case.objects.filter(deployment=f.deployment).filter(f.on_case(""))


def workload_tasks(f: ReportFilters) -> QuerySet[ReviewTask]:
    """The review tasks the workload counts: the filters' cases, every reason but gold."""
    tasks = ReviewTask.objects.filter(case__deployment=f.deployment).exclude(
        reason=ReviewTask.Reason.GOLD)
    tasks = tasks.filter(f.on_case())
    if f.reason:
        tasks = tasks.filter(reason=f.reason)
    return tasks
