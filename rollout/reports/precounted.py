"""The report read from the rollup: every section from a few thousand pre-counted rows
(`rollup`), arranged by `sections`. Tested against a live computation over the rows
(`tests/report_oracle.py`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

from django.db import transaction
from django.db.models import Count, Min, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from reviewplatform.models import Case, Decision, ReviewTask

from ..models import PolicyVersion, ReportKind, Stage
from . import sections
from .features import case_feature_samples, reference_features
from .figures import AUDIT_RATE_SCALE, PERCENTILES, Counts, Report, Route, Workload
from .filters import ReportFilters, report_cases, workload_tasks
from .rollup import Where, rollup_corrected, rollup_read, wait_bin_sql, wait_percentiles


def report_precounted(f: ReportFilters) -> Report:
    with transaction.atomic(), rollup_corrected():
        return _report(f)


def _report(f: ReportFilters) -> Report:
    deployment = f.deployment
    regions = dict(deployment.regions.values_list("pk", "code"))
    policies = {pk: (stage, rate) for pk, stage, rate in PolicyVersion.objects.filter(
        deployment=deployment).values_list("pk", "stage", "audit_rate")}
    region_id = next((pk for pk, code in regions.items() if code == f.region), None)
    base = Where(deployment_id=deployment.pk, day_from=f.date_from, day_to=f.date_to,
                 region_id=region_id, exists=not f.region or region_id is not None)
    staged = replace(base, policy_versions=[pk for pk, (stage, _) in policies.items()
                                            if stage == f.stage] if f.stage else None)
    routed = replace(staged, reason=f.reason or None)
    compared = replace(routed, model_version_id=f.model_version_id or 0)
    input_rows = _input_rows(replace(base, model_version_id=compared.model_version_id))
    recent = sections.drift_days(input_rows)

    decisions = rollup_read(ReportKind.DECISION, routed, ["source"], span=True)
    by_source = {row["source"]: int(row["n"]) for row in decisions}
    automated = by_source.get(Decision.Source.MODEL, 0)
    mix = [(regions.get(row["region_id"], ""), row["rule"],
            policies[row["policy_version_id"]][0] == Stage.SHADOW, row["label"], int(row["n"]))
           for row in rollup_read(ReportKind.DECISION, base,
                                  ["region_id", "rule", "policy_version_id", "label"])]
    audits: dict[float, list[int]] = defaultdict(lambda: [0, 0])
    for row in rollup_read(ReportKind.AUDIT, staged, ["policy_version_id", "agreed", "bin"]):
        rate = (row["bin"] / AUDIT_RATE_SCALE if row["bin"] is not None
                else float(policies[row["policy_version_id"]][1]))
        counted = audits[rate]
        counted[0] += int(row["n"])
        counted[1] += int(row["n"]) if row["agreed"] else 0
    return Report(
        filters=f,
        counts=_counts(f, decisions, by_source, decided=sum(row[-1] for row in mix)),
        headline=sections.headline(f, [
            {"human": row["label"], "model": row["other_label"], "bin": row["bin"],
             "n": int(row["n"]), "conf": row["total"] if row["valued"] else None}
            for row in rollup_read(ReportKind.CONFUSION, compared,
                                   ["label", "other_label", "bin"])]),
        humans=sections.human_human(f, [
            (row["label"], row["other_label"], int(row["n"]))
            for row in rollup_read(ReportKind.SECOND, base, ["label", "other_label"])]),
        slices=sections.slices(f, _slice_rows(routed, compared)),
        inputs=sections.inputs(input_rows),
        drift=sections.drift(regions, input_rows, case_feature_samples(f, days=recent),
                             reference_features(f.model_version_id), days=recent),
        models=sections.model_comparison(f, _comparison_rows(compared)),
        audits=sections.audit_estimate([(rate, n, k) for rate, (n, k) in audits.items()],
                                       automated),
        mix=sections.action_mix(f, mix),
        workload=_workload(f, replace(base, reason=f.reason or None), automated),
    )


def _counts(f: ReportFilters, decisions: list[dict[str, Any]], by_source: dict[str, int], *,
            decided: int) -> Counts:
    """Decided cases from the rollup (`decided`: every decision in the period and region),
    the others (few: the queue) counted live."""
    by_status = dict(report_cases(f)
                     .filter(status__in=[Case.Status.RECEIVED, Case.Status.IN_REVIEW])
                     .values_list("status").annotate(n=Count("id")).order_by())
    if decided:
        by_status[Case.Status.DECIDED] = decided
    return Counts(cases=sum(by_status.values()), by_status=by_status, by_source=by_source,
                  first_capture=min((r["first"] for r in decisions if r["first"]), default=None),
                  last_capture=max((r["last"] for r in decisions if r["last"]), default=None))


def _slice_rows(routed: Where, compared: Where) -> list[dict[str, Any]]:
    """(region, local day, local hour) rows as `sections.slices` takes them: the volume
    from the decisions, the rest from the compared model's predictions."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}

    def row(r: dict[str, Any]) -> dict[str, Any]:
        key = (r["region_id"], r["local_day"], r["hour"])
        return rows.setdefault(key, {
            "region": key[0], "day": key[1], "hour": key[2], "decisions": 0, "by_model": 0,
            "ood": 0, "conf_sum": 0.0, "conf_n": 0, "n": 0, "agreed": 0})

    for r in rollup_read(ReportKind.VOLUME, routed, ["region_id", "local_day", "hour", "source"]):
        counted = row(r)
        counted["decisions"] += int(r["n"])
        counted["by_model"] += int(r["n"]) if r["source"] == Decision.Source.MODEL else 0
    for r in rollup_read(ReportKind.MODEL, compared,
                         ["region_id", "local_day", "hour", "compared", "agreed", "ood"]):
        counted = row(r)
        counted["ood"] += int(r["n"]) if r["ood"] else 0
        counted["conf_sum"] += r["total"]
        counted["conf_n"] += int(r["valued"])
        counted["n"] += int(r["n"]) if r["compared"] else 0
        counted["agreed"] += int(r["n"]) if r["agreed"] else 0
    return list(rows.values())


def _input_rows(where: Where) -> list[dict[str, Any]]:
    """(region, local day) rows as `sections.inputs` (which sums the regions of a day) and
    `sections.drift` take them."""
    days: dict[Any, dict[str, Any]] = {}
    for r in rollup_read(ReportKind.INPUT, where, ["region_id", "local_day", "ood"]):
        day = days.setdefault((r["region_id"], r["local_day"]), {
            "region": r["region_id"], "day": r["local_day"], "n": 0, "ood": 0,
            "conf_sum": 0.0, "conf_n": 0})
        day["n"] += int(r["n"])
        day["ood"] += int(r["n"]) if r["ood"] else 0
        day["conf_sum"] += r["total"]
        day["conf_n"] += int(r["valued"])
    return list(days.values())


def _comparison_rows(compared: Where) -> list[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    for r in rollup_read(ReportKind.PAIR, compared, ["other_version_id", "agreed", "other_agreed"]):
        counted = rows.setdefault(r["other_version_id"], {
            "version": r["other_version_id"], "n": 0, "agreed": 0, "compared_agreed": 0,
            "challenger_only": 0, "compared_only": 0})
        n = int(r["n"])
        counted["n"] += n
        counted["agreed"] += n if r["other_agreed"] else 0
        counted["compared_agreed"] += n if r["agreed"] else 0
        counted["challenger_only"] += n if r["other_agreed"] and not r["agreed"] else 0
        counted["compared_only"] += n if r["agreed"] and not r["other_agreed"] else 0
    return list(rows.values())


def _workload(f: ReportFilters, where: Where, automated: int) -> Workload:
    """Finished tasks from the rollup; unfinished ones (the queue) counted live, with their
    waiting-time bins when claimed."""
    routes: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"done": 0, "waiting": 0, "seconds": 0.0, "bins": defaultdict(int)})
    for r in rollup_read(ReportKind.TASK, where, ["reason", "bin"]):
        route = routes[r["reason"]]
        route["done"] += int(r["n"])
        route["seconds"] += r["total"]
        if r["bin"] is not None:
            route["bins"][r["bin"]] += int(r["n"])
    tasks = workload_tasks(f)
    table = ReviewTask._meta.db_table
    waited = RawSQL(  # noqa: S611 - constant SQL, no input
        wait_bin_sql(f'"{table}"."claimed_at" - "{table}"."created_at"'), [])
    unfinished = (tasks.filter(status__in=[ReviewTask.Status.OPEN, ReviewTask.Status.CLAIMED])
                  .annotate(bin=waited)
                  .values("reason", "bin").annotate(n=Count("id")).order_by())
    for u in unfinished:
        route = routes[u["reason"]]
        route["waiting"] += u["n"]
        if u["bin"] is not None:
            route["bins"][u["bin"]] += u["n"]
    every: dict[int, int] = defaultdict(int)
    out = []
    for reason in sorted(routes):
        route = routes[reason]
        for b, n in route["bins"].items():
            every[b] += n
        out.append(Route(reason=reason, tasks=route["done"] + route["waiting"],
                         done=route["done"], waiting=route["waiting"],
                         minutes=route["seconds"] / 60,
                         wait_p=wait_percentiles(route["bins"], PERCENTILES)))
    return Workload(by_model=automated, routes=out,
                    oldest_waiting_s=oldest_waiting_s(tasks),
                    wait_p=wait_percentiles(every, PERCENTILES))



def oldest_waiting_s(tasks: QuerySet[ReviewTask]) -> float | None:
    """How long the oldest open task of `tasks` has waited, counted live (the queue)."""
    oldest = tasks.filter(status=ReviewTask.Status.OPEN).aggregate(t=Min("created_at"))["t"]
    return (timezone.now() - oldest).total_seconds() if oldest else None
