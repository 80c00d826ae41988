"""Report aggregates, each counted by the database; Python only sees small grouped tables."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from django.db import connection, transaction
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
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import (
    Cast,
    ExtractHour,
    Floor,
    Least,
    TruncDate,
)
from django.utils import timezone

from inference.models import ModelVersion, Prediction
from reviewplatform.models import Case, Decision, Review, ReviewTask
from reviewplatform.stats import Proportion as Agreement
from reviewplatform.stats import proportion as wilson_interval

from ..models import Stage
from . import stats
from .filters import ReportFilters

CONFIDENCE_BINS = 10
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
PERCENTILES = (0.5, 0.9, 0.99)


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


def _compared(f: ReportFilters) -> Q:
    """A human decided with one of the labels and the model answered: both saw the case."""
    return (Q(source=Decision.Source.HUMAN, label__in=list(f.deployment.labels))
            & Q(mp__label__isnull=False))


AGREED = Q(label=F("mp__label"))


# -- headline: confusion, agreement, kappa, per class, calibration ---------------------------

@dataclass
class Headline:
    labels: list[str]
    confusion: list[list[int]]
    agreement: Agreement
    kappa: stats.Kappa
    classes: list[stats.ClassFigures]
    calibration: list[stats.CalibrationBin]
    ece: float | None

    @property
    def confusion_rows(self) -> list[tuple[str, list[int]]]:
        return list(zip(self.labels, self.confusion, strict=True))


def _bin() -> Any:
    return Least(Cast(Floor(F("mp__confidence") * CONFIDENCE_BINS), IntegerField()),
                 Value(CONFIDENCE_BINS - 1))


def headline(f: ReportFilters, rows: Iterable[Mapping[str, Any]] | None = None) -> Headline:
    """One grouped query: (human label, model label, confidence bin) -> n, sum of confidence.
    `rows`: the same grouped rows, counted elsewhere (the rollup)."""
    labels = list(f.deployment.labels)
    if rows is None:
        rows = (decisions_filtered(f).filter(_compared(f))
                .annotate(human=F("label"), model=F("mp__label"), bin=_bin())
                .values("human", "model", "bin")
                .annotate(n=Count("id"), conf=Sum("mp__confidence"))
                .order_by())
    index = {label: i for i, label in enumerate(labels)}
    confusion = [[0] * len(labels) for _ in labels]
    bins = [[0, 0, 0.0] for _ in range(CONFIDENCE_BINS)]
    agreed = total = 0
    for row in rows:
        same = row["human"] == row["model"]
        total += row["n"]
        agreed += row["n"] if same else 0
        if row["model"] in index:
            confusion[index[row["human"]]][index[row["model"]]] += row["n"]
        if row["bin"] is not None:
            b = bins[max(0, row["bin"])]
            b[0] += row["n"]
            b[1] += row["n"] if same else 0
            b[2] += row["conf"] or 0.0
    calibration = [stats.CalibrationBin(low=i / CONFIDENCE_BINS, high=(i + 1) / CONFIDENCE_BINS,
                                        n=int(n), agreed=int(k),
                                        mean_confidence=(s / n if n else None))
                   for i, (n, k, s) in enumerate(bins)]
    return Headline(labels=labels, confusion=confusion, agreement=wilson_interval(agreed, total),
                    kappa=stats.cohens_kappa(confusion),
                    classes=stats.per_class(labels, confusion), calibration=calibration,
                    ece=stats.expected_calibration_error(calibration))


# -- human against human ------------------------------------------------------------------------

@dataclass
class HumanAgreement:
    agreement: Agreement
    kappa: stats.Kappa


def human_human(f: ReportFilters, pairs: Iterable[tuple[str, str, int]] | None = None
                ) -> HumanAgreement:
    """Second opinions against the review they check: the bar the model is held to.
    `pairs`: (first answer, second answer, n), counted elsewhere."""
    if pairs is None:
        qs = Review.objects.filter(case__deployment=f.deployment,
                                   task__reason=ReviewTask.Reason.SECOND_OPINION,
                                   task__follows__isnull=False)
        qs = qs.filter(f.on_case())
        pairs = (qs.values_list("task__follows__answer", "answer").annotate(n=Count("id"))
                 .order_by())
    labels = list(f.deployment.labels)
    index = {label: i for i, label in enumerate(labels)}
    table = [[0] * len(labels) for _ in labels]
    agreed = total = 0
    for first, second, n in pairs:
        total += n
        agreed += n if first == second else 0
        if first in index and second in index:
            table[index[first]][index[second]] += n
    return HumanAgreement(agreement=wilson_interval(agreed, total),
                          kappa=stats.cohens_kappa(table))


# -- by region, local hour, weekday and day --------------------------------------------------

@dataclass
class Slice:
    key: Any
    decisions: int = 0
    by_model: int = 0
    ood: int = 0
    confidence_sum: float = 0.0
    confidence_n: int = 0
    n: int = 0
    agreed: int = 0

    @property
    def agreement(self) -> Agreement:
        return wilson_interval(self.agreed, self.n)

    @property
    def automation_rate(self) -> float | None:
        return self.by_model / self.decisions if self.decisions else None

    @property
    def ood_rate(self) -> float | None:
        return self.ood / self.confidence_n if self.confidence_n else None

    @property
    def mean_confidence(self) -> float | None:
        return self.confidence_sum / self.confidence_n if self.confidence_n else None

    def add(self, row: Mapping[str, Any]) -> None:
        self.decisions += row["decisions"]
        self.by_model += row["by_model"]
        self.ood += row["ood"]
        self.confidence_sum += row["conf_sum"] or 0.0
        self.confidence_n += row["conf_n"]
        self.n += row["n"]
        self.agreed += row["agreed"]


@dataclass
class Slices:
    by_region: list[Slice] = field(default_factory=list)
    by_hour: list[Slice] = field(default_factory=list)
    by_weekday: list[Slice] = field(default_factory=list)
    by_day: list[Slice] = field(default_factory=list)
    night: Slice = field(default_factory=lambda: Slice("night 20:00-06:00"))
    day: Slice = field(default_factory=lambda: Slice("day 06:00-20:00"))


def _local(expression: type[Any], zones: dict[int, str]) -> Any:
    """The capture time's field in each case's own region time zone (one CASE per region)."""
    whens = [When(case__region_id=rid, then=expression("case__captured_at", tzinfo=ZoneInfo(tz)))
             for rid, tz in zones.items()]
    return CaseWhen(*whens, default=Value(None))


def slices(f: ReportFilters, rows: Iterable[Mapping[str, Any]] | None = None) -> Slices:
    """One grouped query: (region, local capture date, local hour) -> volume, automation,
    out-of-domain, confidence and agreement. Weekday, region, hour, day and night are sums.
    `rows`: the same grouped rows, counted elsewhere."""
    regions = f.deployment.regions.all()
    if f.region:
        regions = regions.filter(code=f.region)
    codes = dict(regions.values_list("pk", "code"))
    if rows is None:
        zones = dict(regions.values_list("pk", "timezone"))
        compared = _compared(f)
        rows = (decisions_filtered(f)
                .annotate(region=F("case__region_id"),
                          day=_local(TruncDate, zones), hour=_local(ExtractHour, zones))
                .values("region", "day", "hour")
                .annotate(decisions=Count("id"),
                          by_model=Count("id", filter=Q(source=Decision.Source.MODEL)),
                          ood=Count("id", filter=Q(mp__out_of_domain=True)),
                          conf_sum=Sum("mp__confidence"), conf_n=Count("mp__confidence"),
                          n=Count("id", filter=compared),
                          agreed=Count("id", filter=compared & AGREED))
                .order_by())
    by_region = {rid: Slice(code) for rid, code in codes.items()}
    by_hour = [Slice(h) for h in range(24)]
    by_weekday = [Slice(d) for d in WEEKDAYS]
    by_day: dict[date, Slice] = {}
    result = Slices()
    for row in rows:
        if row["day"] is None:
            continue
        by_region[row["region"]].add(row)
        by_hour[row["hour"]].add(row)
        by_weekday[row["day"].weekday()].add(row)
        by_day.setdefault(row["day"], Slice(row["day"])).add(row)
        (result.day if 6 <= row["hour"] < 20 else result.night).add(row)
    result.by_region = list(by_region.values())
    result.by_hour = by_hour
    result.by_weekday = by_weekday
    result.by_day = [by_day[d] for d in sorted(by_day)]
    return result


# -- what the model sees: every predicted case, decided or not -------------------------------

@dataclass
class InputDay:
    key: date
    predicted: int = 0
    ood: int = 0
    confidence_sum: float = 0.0
    confidence_n: int = 0

    @property
    def ood_rate(self) -> float | None:
        return self.ood / self.predicted if self.predicted else None

    @property
    def mean_confidence(self) -> float | None:
        return self.confidence_sum / self.confidence_n if self.confidence_n else None


def inputs(f: ReportFilters, rows: Iterable[Mapping[str, Any]] | None = None) -> list[InputDay]:
    """The compared model's answers on every case captured in the period, decided or not,
    by local capture date: out-of-domain rate and mean confidence before any review, so a
    shift shows in the shadow stage as soon as cases arrive. Stage and reason do not apply
    (they come with routing and review). `rows`: (day, n, ood, conf_sum, conf_n)."""
    if rows is None:
        regions = f.deployment.regions.all()
        if f.region:
            regions = regions.filter(code=f.region)
        zones = dict(regions.values_list("pk", "timezone"))
        rows = (Prediction.objects.filter(case__deployment=f.deployment,
                                          model_version_id=f.model_version_id or 0,
                                          status=Prediction.Status.OK)
                .filter(f.on_case())
                .annotate(day=_local(TruncDate, zones))
                .values("day")
                .annotate(n=Count("id"), ood=Count("id", filter=Q(out_of_domain=True)),
                          conf_sum=Sum("confidence"), conf_n=Count("confidence"))
                .order_by())
    days: dict[date, InputDay] = {}
    for row in rows:
        if row["day"] is None:
            continue
        day = days.setdefault(row["day"], InputDay(row["day"]))
        day.predicted += row["n"]
        day.ood += row["ood"]
        day.confidence_sum += row["conf_sum"] or 0.0
        day.confidence_n += row["conf_n"]
    return [days[d] for d in sorted(days)]


# -- champion against challengers ------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    name: str
    version_id: int
    is_champion: bool
    n: int
    agreed: int
    compared_agreed: int  # the compared model (usually the champion) on the same cases
    challenger_only: int
    compared_only: int
    p_value: float | None

    @property
    def agreement(self) -> Agreement:
        return wilson_interval(self.agreed, self.n)

    @property
    def compared_agreement(self) -> Agreement:
        return wilson_interval(self.compared_agreed, self.n)


def model_comparison(f: ReportFilters, rows: Iterable[Mapping[str, Any]] | None = None
                     ) -> list[Comparison]:
    """Each other model version against the compared one, on the same human-decided cases.
    `rows`: per other version, the same counts, counted elsewhere."""
    if rows is None:
        qs = (decisions_filtered(f).filter(_compared(f))
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
    versions = {v.pk: v for v in ModelVersion.objects.filter(deployment=f.deployment)}
    out = []
    for row in rows:
        version = versions[row["version"]]
        out.append(Comparison(
            name=version.name, version_id=version.pk, is_champion=version.is_champion,
            n=row["n"], agreed=row["agreed"], compared_agreed=row["compared_agreed"],
            challenger_only=row["challenger_only"], compared_only=row["compared_only"],
            p_value=stats.mcnemar_p(row["challenger_only"], row["compared_only"])))
    return sorted(out, key=lambda c: c.name)


# -- agreement inside the automated scope, from audits ---------------------------------------

@dataclass(frozen=True)
class AuditEstimate:
    weighted: stats.WeightedAgreement
    raw: Agreement
    automated: int  # model decisions under the filters


def audit_estimate(f: ReportFilters, table: list[tuple[float, int, int]] | None = None,
                   automated: int | None = None) -> AuditEstimate:
    """Audit reviews of model decisions against the decision, each weighted by 1/audit rate of
    the policy version that sampled it; a blind answer that is not a label counts as not
    agreeing (the model's action was not confirmed). `table`: (audit rate, audits, agreed)
    and `automated`, counted elsewhere."""
    if table is None:
        qs = Review.objects.filter(case__deployment=f.deployment,
                                   task__reason=ReviewTask.Reason.AUDIT,
                                   case__decision__source=Decision.Source.MODEL)
        qs = qs.filter(f.on_case())
        if f.stage:
            qs = qs.filter(task__policy_version__stage=f.stage)
        groups = (qs.values_list("task__policy_version__audit_rate")
                  .annotate(n=Count("id"),
                            agreed=Count("id", filter=Q(answer=F("case__decision__label"))))
                  .order_by())
        table = [(float(rate), n, k) for rate, n, k in groups]
    if automated is None:
        automated = decisions_filtered(f).filter(source=Decision.Source.MODEL).count()
    return AuditEstimate(weighted=stats.inverse_rate_weighted(table),
                         raw=wilson_interval(sum(k for *_, k in table),
                                             sum(n for _, n, _ in table)),
                         automated=automated)


# -- the action mix against the manual process -----------------------------------------------

def action_mix(f: ReportFilters, rows: Iterable[tuple[str, str, bool, str, int]] | None = None
               ) -> list[stats.MixTest]:
    """Per region, and per scope cell (rule x region) the model has decided in: the labels
    decided during the shadow stage against those decided since (any later stage). Not
    narrowed by the stage or reason filters: the comparison spans the stages. `rows`:
    (region code, rule, shadow, label, n), counted elsewhere."""
    labels = list(f.deployment.labels)
    if rows is None:
        qs = Decision.objects.filter(case__deployment=f.deployment)
        qs = qs.filter(f.on_case())
        rows = (qs.annotate(shadow=_shadow())
                .values_list("case__region__code", "rule", "shadow", "label")
                .annotate(n=Count("id")).order_by())
    index = {label: i for i, label in enumerate(labels)}
    tables: dict[str, list[list[int]]] = defaultdict(
        lambda: [[0] * len(labels), [0] * len(labels)])
    for region, rule, shadow, label, n in rows:
        if label not in index:
            continue
        keys = [f"region {region}"] + ([f"rule {rule} in {region}"] if rule else [])
        for key in keys:
            tables[key][0 if shadow else 1][index[label]] += n
    return [stats.action_mix_test(scope, labels, shadow, since)
            for scope, (shadow, since) in sorted(tables.items())
            if sum(since) and (scope.startswith("region") or sum(shadow))]


def _shadow() -> Any:
    return CaseWhen(When(policy_version__stage=Stage.SHADOW, then=True), default=False)


# -- workload ------------------------------------------------------------------------------------

@dataclass
class Route:
    reason: str
    tasks: int
    done: int
    waiting: int
    minutes: float
    wait_p: dict[str, float | None]


@dataclass
class Workload:
    by_model: int
    routes: list[Route]
    oldest_waiting_s: float | None
    wait_p: dict[str, float | None]

    @property
    def total_minutes(self) -> float:
        return sum(r.minutes for r in self.routes)


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value) / 1e6


def workload_tasks(f: ReportFilters) -> QuerySet[ReviewTask]:
    """The review tasks the workload counts: the filters' cases, every reason but gold."""
    tasks = ReviewTask.objects.filter(case__deployment=f.deployment).exclude(
        reason=ReviewTask.Reason.GOLD)
    tasks = tasks.filter(f.on_case())
    if f.reason:
        tasks = tasks.filter(reason=f.reason)
    return tasks


def oldest_waiting_s(tasks: QuerySet[ReviewTask]) -> float | None:
    oldest = tasks.filter(status=ReviewTask.Status.OPEN).aggregate(t=Min("created_at"))["t"]
    return (timezone.now() - oldest).total_seconds() if oldest else None


def workload(f: ReportFilters) -> Workload:
    """Cases by route, reviewer minutes and waiting time (creation to first claim)."""
    tasks = workload_tasks(f)
    wait = ExpressionWrapper(F("claimed_at") - F("created_at"), output_field=DurationField())
    if connection.vendor == "postgresql":
        routes, wait_all = _routes_grouped(tasks, wait)
    else:
        routes = []
        rows = (tasks.values("reason")
                .annotate(tasks=Count("id"),
                          done=Count("id", filter=Q(status=ReviewTask.Status.DONE)),
                          waiting=Count("id", filter=~Q(status=ReviewTask.Status.DONE)),
                          seconds=Sum("review__seconds"))
                .order_by("reason"))
        for row in cast(Iterable[dict[str, Any]], rows):
            routes.append(Route(reason=row["reason"], tasks=row["tasks"], done=row["done"],
                                waiting=row["waiting"], minutes=(row["seconds"] or 0.0) / 60,
                                wait_p=_offset_percentiles(tasks.filter(reason=row["reason"]),
                                                           wait)))
        wait_all = _offset_percentiles(tasks, wait)
    by_model = decisions_filtered(f).filter(source=Decision.Source.MODEL).count()
    return Workload(by_model=by_model, routes=routes, oldest_waiting_s=oldest_waiting_s(tasks),
                    wait_p=wait_all)


_ROUTES_SQL = """
SELECT GROUPING(reason) AS overall, reason, COUNT(*) AS tasks,
       COUNT(*) FILTER (WHERE status = %s) AS done, COUNT(*) FILTER (WHERE status <> %s) AS waiting,
       SUM(seconds) AS seconds, {percentiles}
FROM ({inner}) AS t
GROUP BY GROUPING SETS ((reason), ())
ORDER BY GROUPING(reason), reason
"""


def _routes_grouped(tasks: QuerySet[ReviewTask], wait: Any
                    ) -> tuple[list[Route], dict[str, float | None]]:
    """PostgreSQL: each route and all routes together (GROUPING SETS) in one pass, with the
    waiting-time percentiles (percentile_cont) of the claimed tasks."""
    inner, params = (tasks.annotate(wait=wait, seconds=F("review__seconds"))
                     .values("reason", "status", "wait", "seconds").order_by()
                     .query.sql_with_params())
    percentiles = ", ".join(
        f"PERCENTILE_CONT({p}) WITHIN GROUP (ORDER BY wait) FILTER (WHERE wait IS NOT NULL)"
        f" AS p{int(p * 100)}" for p in PERCENTILES)
    with connection.cursor() as cursor:
        cursor.execute(_ROUTES_SQL.format(percentiles=percentiles, inner=inner),
                       (ReviewTask.Status.DONE, ReviewTask.Status.DONE, *params))
        names = [c[0] for c in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    routes = []
    wait_all: dict[str, float | None] = {f"p{int(p * 100)}": None for p in PERCENTILES}
    for row in rows:
        wait_p = {f"p{int(p * 100)}": _seconds(row[f"p{int(p * 100)}"]) for p in PERCENTILES}
        if row["overall"]:
            wait_all = wait_p
            continue
        routes.append(Route(reason=row["reason"], tasks=row["tasks"], done=row["done"],
                            waiting=row["waiting"], minutes=(row["seconds"] or 0.0) / 60,
                            wait_p=wait_p))
    return routes, wait_all


def _offset_percentiles(tasks: QuerySet[ReviewTask], wait: Any) -> dict[str, float | None]:
    """Other databases: the database sorts, one row is read per percentile (nearest rank)."""
    claimed = tasks.filter(claimed_at__isnull=False).annotate(wait=wait)
    n = claimed.count()
    out: dict[str, float | None] = {}
    for p in PERCENTILES:
        key = f"p{int(p * 100)}"
        if not n:
            out[key] = None
            continue
        value = claimed.order_by("wait").values_list("wait", flat=True)[min(n - 1, int(p * n))]
        out[key] = _seconds(value)
    return out


# -- counts and the whole report ---------------------------------------------------------------

@dataclass
class Counts:
    cases: int
    by_status: dict[str, int]
    by_source: dict[str, int]
    first_capture: Any
    last_capture: Any


def counts(f: ReportFilters) -> Counts:
    figures = decisions_filtered(f).aggregate(
        first=Min("case__captured_at"), last=Max("case__captured_at"))
    by_source = dict(decisions_filtered(f).values_list("source").annotate(n=Count("id"))
                     .order_by())
    by_status = dict(report_cases(f).values_list("status").annotate(n=Count("id")).order_by())
    return Counts(cases=sum(by_status.values()), by_status=by_status, by_source=by_source,
                  first_capture=figures["first"], last_capture=figures["last"])


def report_cases(f: ReportFilters) -> QuerySet[Case]:
    """The deployment's cases in the filters' period and region."""
    return Case.objects.filter(deployment=f.deployment).filter(f.on_case(""))


@dataclass
class Report:
    filters: ReportFilters
    counts: Counts
    headline: Headline
    humans: HumanAgreement
    slices: Slices
    inputs: list[InputDay]
    models: list[Comparison]
    audits: AuditEstimate
    mix: list[stats.MixTest]
    workload: Workload


def report_build(f: ReportFilters) -> Report:
    """The whole report. On PostgreSQL it is read from the pre-counted rollup
    (`precounted.report_precounted`); elsewhere (and as the reference it is tested against,
    `report_build_live`) each section runs its own query over the live rows."""
    if connection.vendor == "postgresql":
        from .precounted import report_precounted

        with report_reading():
            return report_precounted(f)
    return report_build_live(f)


def report_build_live(f: ReportFilters) -> Report:
    with report_reading():
        return Report(filters=f, counts=counts(f), headline=headline(f), humans=human_human(f),
                      slices=slices(f), inputs=inputs(f), models=model_comparison(f),
                      audits=audit_estimate(f),
                      mix=action_mix(f), workload=workload(f))


@contextmanager
def report_reading() -> Iterator[None]:
    """One transaction, and on PostgreSQL one snapshot (repeatable read: the sections agree
    with each other) without JIT compilation: the live queries' scans of a million rows pass
    its cost threshold, and compiling them took longer than running them."""
    if transaction.get_connection().in_atomic_block:
        yield  # already inside a transaction: its isolation level stays as it is
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cursor.execute("SET LOCAL jit = off")
        yield



# -- the disagreements gallery -------------------------------------------------------------------

@dataclass(frozen=True)
class Disagreement:
    case_id: int
    external_id: str
    region: str
    captured_at: Any
    human: str
    model: str
    confidence: float | None
    out_of_domain: bool
    adjudicated: str | None


def disagreements(f: ReportFilters, *, human: str = "", model: str = "", limit: int = 48,
                  offset: int = 0) -> list[Disagreement]:
    """Human decisions the compared model answered otherwise, the most confident model first
    (like fastai's plot_top_losses): the cases that show where it is wrong and sure of it."""
    from django.db.models import OuterRef, Subquery

    from ..models import Adjudication

    # Negating the annotation, not `AGREED` itself: excluding across the multi-valued
    # relation would join the predictions a second time.
    qs = (decisions_filtered(f).filter(_compared(f)).annotate(model_label=F("mp__label"))
          .exclude(label=F("model_label")))
    if human:
        qs = qs.filter(label=human)
    if model:
        qs = qs.filter(mp__label=model)  # type: ignore[misc]
    newest = Subquery(Adjudication.objects.filter(case_id=OuterRef("case_id"))
                      .order_by("-created_at", "-id").values("label")[:1])
    rows = (qs.annotate(adjudicated=newest)
            .values_list("case_id", "case__external_id", "case__region__code",
                         "case__captured_at", "label", "mp__label", "mp__confidence",
                         "mp__out_of_domain", "adjudicated")  # type: ignore[misc]
            .order_by(F("mp__confidence").desc(nulls_last=True), "-case_id")
            [offset:offset + limit])
    return [Disagreement(*row) for row in rows]
