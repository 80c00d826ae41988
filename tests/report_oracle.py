"""The report computed live, each section by its own grouped query over the rows: the
reference the pre-counted figures (`rollout.reports.precounted`) are tested against.

The queries count what the rollup's facts count, another way (the ORM over the live rows
rather than facts folded into sums); the grouped counts are then arranged by the product's
own `sections`, as the pre-counted ones are.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import Case as CaseWhen
from django.db.models import (
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    FilteredRelation,
    IntegerField,
    Max,
    Min,
    Q,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, ExtractHour, Floor, Least, TruncDate

from inference.models import Prediction
from reviewplatform.models import Decision, Review, ReviewTask
from rollout.models import Stage
from rollout.reports import sections
from rollout.reports.features import case_feature_samples, reference_features
from rollout.reports.figures import (
    CONFIDENCE_BINS,
    PERCENTILES,
    AuditEstimate,
    Comparison,
    Counts,
    DriftCell,
    Headline,
    HumanAgreement,
    InputDay,
    Report,
    Route,
    Slices,
    Workload,
)
from rollout.reports.filters import (
    ReportFilters,
    compared,
    decisions_filtered,
    report_cases,
    workload_tasks,
)
from rollout.reports.precounted import oldest_waiting_s
from rollout.reports.selectors import report_reading
from rollout.reports.stats import MixTest

AGREED = Q(label=F("mp__label"))


def report_build_live(f: ReportFilters) -> Report:
    with report_reading():
        return Report(filters=f, counts=counts(f), headline=headline(f), humans=human_human(f),
                      slices=slices(f), inputs=inputs(f), drift=drift(f),
                      models=model_comparison(f),
                      audits=audit_estimate(f), mix=action_mix(f), workload=workload(f))


def _bin() -> Any:
    return Least(Cast(Floor(F("mp__confidence") * CONFIDENCE_BINS), IntegerField()),
                 Value(CONFIDENCE_BINS - 1))


def headline(f: ReportFilters) -> Headline:
    """(human label, model label, confidence bin) -> n, sum of confidence."""
    rows = (decisions_filtered(f).filter(compared(f))
            .annotate(human=F("label"), model=F("mp__label"), bin=_bin())
            .values("human", "model", "bin")
            .annotate(n=Count("id"), conf=Sum("mp__confidence"))
            .order_by())
    return sections.headline(f, rows)


def human_human(f: ReportFilters) -> HumanAgreement:
    qs = Review.objects.filter(case__deployment=f.deployment,
                               task__reason=ReviewTask.Reason.SECOND_OPINION,
                               task__follows__isnull=False)
    qs = qs.filter(f.on_case())
    pairs = qs.values_list("task__follows__answer", "answer").annotate(n=Count("id")).order_by()
    return sections.human_human(f, pairs)


def _local(expression: type[Any], zones: dict[int, str]) -> Any:
    """The capture time's field in each case's own region time zone (one CASE per region)."""
    whens = [When(case__region_id=rid, then=expression("case__captured_at", tzinfo=ZoneInfo(tz)))
             for rid, tz in zones.items()]
    return CaseWhen(*whens, default=Value(None))


def _zones(f: ReportFilters) -> dict[int, str]:
    regions = f.deployment.regions.all()
    if f.region:
        regions = regions.filter(code=f.region)
    return dict(regions.values_list("pk", "timezone"))


def slices(f: ReportFilters) -> Slices:
    """(region, local capture date, local hour) -> volume, automation, out-of-domain,
    confidence and agreement."""
    zones = _zones(f)
    both = compared(f)
    rows = (decisions_filtered(f)
            .annotate(region=F("case__region_id"),
                      day=_local(TruncDate, zones), hour=_local(ExtractHour, zones))
            .values("region", "day", "hour")
            .annotate(decisions=Count("id"),
                      by_model=Count("id", filter=Q(source=Decision.Source.MODEL)),
                      ood=Count("id", filter=Q(mp__out_of_domain=True)),
                      conf_sum=Sum("mp__confidence"), conf_n=Count("mp__confidence"),
                      n=Count("id", filter=both),
                      agreed=Count("id", filter=both & AGREED))
            .order_by())
    return sections.slices(f, rows)


def inputs(f: ReportFilters) -> list[InputDay]:
    """The compared model's answers on every case captured in the period, decided or not;
    stage and reason do not apply."""
    rows = (Prediction.objects.filter(case__deployment=f.deployment,
                                      model_version_id=f.model_version_id or 0,
                                      status=Prediction.Status.OK)
            .filter(f.on_case())
            .annotate(day=_local(TruncDate, _zones(f)))
            .values("day")
            .annotate(n=Count("id"), ood=Count("id", filter=Q(out_of_domain=True)),
                      conf_sum=Sum("confidence"), conf_n=Count("confidence"))
            .order_by())
    return sections.inputs(rows)


def drift(f: ReportFilters) -> list[DriftCell]:
    """Per region and local day, the compared model's answers and out-of-domain flags; the
    features are the product's own samples (the statistic has no other way to be counted)."""
    rows = (Prediction.objects.filter(case__deployment=f.deployment,
                                      model_version_id=f.model_version_id or 0,
                                      status=Prediction.Status.OK)
            .filter(f.on_case())
            .annotate(day=_local(TruncDate, _zones(f)))
            .values("case__region_id", "day")
            .annotate(n=Count("id"), ood=Count("id", filter=Q(out_of_domain=True)))
            .order_by())
    rows = [{**row, "region": row["case__region_id"]} for row in rows]
    days = sections.drift_days(rows)
    return sections.drift(dict(f.deployment.regions.values_list("pk", "code")), rows,
                          case_feature_samples(f, days=days),
                          reference_features(f.model_version_id), days=days)


def model_comparison(f: ReportFilters) -> list[Comparison]:
    qs = (decisions_filtered(f).filter(compared(f))
          .alias(other=FilteredRelation(
              "case__predictions",
              condition=Q(case__predictions__status=Prediction.Status.OK)
              & ~Q(case__predictions__model_version_id=f.model_version_id or 0)))
          .filter(other__label__isnull=False))
    other_right = Q(label=F("other__label"))
    rows = (qs.values(version=F("other__model_version_id"))
            .annotate(n=Count("id"), agreed=Count("id", filter=other_right),
                      compared_agreed=Count("id", filter=AGREED),
                      challenger_only=Count("id", filter=other_right & ~AGREED),
                      compared_only=Count("id", filter=AGREED & ~other_right))
            .order_by())
    return sections.model_comparison(f, rows)


def audit_estimate(f: ReportFilters) -> AuditEstimate:
    qs = Review.objects.filter(case__deployment=f.deployment,
                               task__reason=ReviewTask.Reason.AUDIT,
                               case__decision__source=Decision.Source.MODEL)
    qs = qs.filter(f.on_case())
    if f.stage:
        qs = qs.filter(task__policy_version__stage=f.stage)
    groups = (qs.values_list(Coalesce("task__audit_rate", "task__policy_version__audit_rate"))
              .annotate(n=Count("id"),
                        agreed=Count("id", filter=Q(answer=F("case__decision__label"))))
              .order_by())
    automated = decisions_filtered(f).filter(source=Decision.Source.MODEL).count()
    return sections.audit_estimate([(float(rate), n, k) for rate, n, k in groups], automated)


def action_mix(f: ReportFilters) -> list[MixTest]:
    """Not narrowed by the stage or reason filters: the comparison spans the stages."""
    qs = Decision.objects.filter(case__deployment=f.deployment).filter(f.on_case())
    shadow = CaseWhen(When(policy_version__stage=Stage.SHADOW, then=True), default=False)
    rows = (qs.annotate(shadow=shadow)
            .values_list("case__region__code", "rule", "shadow", "label")
            .annotate(n=Count("id")).order_by())
    return sections.action_mix(f, rows)


_ROUTES_SQL = """
SELECT GROUPING(reason) AS overall, reason, COUNT(*) AS tasks,
       COUNT(*) FILTER (WHERE status = %s) AS done, COUNT(*) FILTER (WHERE status <> %s) AS waiting,
       SUM(seconds) AS seconds, {percentiles}
FROM ({inner}) AS t
GROUP BY GROUPING SETS ((reason), ())
ORDER BY GROUPING(reason), reason
"""


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def workload(f: ReportFilters) -> Workload:
    """Each route and all routes together (GROUPING SETS) in one pass, with the exact
    waiting-time percentiles (percentile_cont, creation to first claim) of the claimed
    tasks."""
    tasks = workload_tasks(f)
    wait = ExpressionWrapper(F("claimed_at") - F("created_at"), output_field=DurationField())
    inner, params = (tasks.annotate(wait=wait, seconds=F("review__seconds"))
                     .values("reason", "status", "wait", "seconds").order_by()
                     .query.sql_with_params())
    keys = [f"p{int(p * 100)}" for p in PERCENTILES]
    percentiles = ", ".join(
        f"PERCENTILE_CONT({p}) WITHIN GROUP (ORDER BY wait) FILTER (WHERE wait IS NOT NULL)"
        f" AS {key}" for p, key in zip(PERCENTILES, keys, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(_ROUTES_SQL.format(percentiles=percentiles, inner=inner),
                       (ReviewTask.Status.DONE, ReviewTask.Status.DONE, *params))
        names = [c[0] for c in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    routes = []
    wait_all: dict[str, float | None] = dict.fromkeys(keys)
    for row in rows:
        wait_p = {key: _seconds(row[key]) for key in keys}
        if row["overall"]:
            wait_all = wait_p
            continue
        routes.append(Route(reason=row["reason"], tasks=row["tasks"], done=row["done"],
                            waiting=row["waiting"], minutes=(row["seconds"] or 0.0) / 60,
                            wait_p=wait_p))
    by_model = decisions_filtered(f).filter(source=Decision.Source.MODEL).count()
    return Workload(by_model=by_model, routes=routes, oldest_waiting_s=oldest_waiting_s(tasks),
                    wait_p=wait_all)


def counts(f: ReportFilters) -> Counts:
    figures = decisions_filtered(f).aggregate(
        first=Min("case__captured_at"), last=Max("case__captured_at"))
    by_source = dict(decisions_filtered(f).values_list("source").annotate(n=Count("id"))
                     .order_by())
    by_status = dict(report_cases(f).values_list("status").annotate(n=Count("id")).order_by())
    return Counts(cases=sum(by_status.values()), by_status=by_status, by_source=by_source,
                  first_capture=figures["first"], last_capture=figures["last"])
