"""Each section of the report from its grouped counts: small tables in, figures out.

The database counts (`precounted` reads the counts from the rollup); here they are only
arranged and their statistics computed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

import numpy as np

from inference.models import ModelVersion
from reviewplatform.stats import proportion

from . import stats
from .drift import MIN_CASES, RECENT_DAYS, drift_test, median_bandwidth
from .features import FeatureSample
from .figures import (
    CONFIDENCE_BINS,
    WEEKDAYS,
    AuditEstimate,
    Comparison,
    DriftCell,
    Headline,
    HumanAgreement,
    InputDay,
    Slice,
    Slices,
)
from .filters import ReportFilters


def headline(f: ReportFilters, rows: Iterable[Mapping[str, Any]]) -> Headline:
    """`rows`: (human label, model label, confidence bin) -> n, sum of confidence (`conf`),
    for the human decisions the compared model answered."""
    labels = list(f.deployment.labels)
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
    return Headline(labels=labels, confusion=confusion, agreement=proportion(agreed, total),
                    kappa=stats.cohens_kappa(confusion),
                    classes=stats.per_class(labels, confusion), calibration=calibration,
                    ece=stats.expected_calibration_error(calibration))


def human_human(f: ReportFilters, pairs: Iterable[tuple[str, str, int]]) -> HumanAgreement:
    """`pairs`: (first answer, second answer, n) of the second opinions and the reviews they
    check."""
    labels = list(f.deployment.labels)
    index = {label: i for i, label in enumerate(labels)}
    table = [[0] * len(labels) for _ in labels]
    agreed = total = 0
    for first, second, n in pairs:
        total += n
        agreed += n if first == second else 0
        if first in index and second in index:
            table[index[first]][index[second]] += n
    return HumanAgreement(agreement=proportion(agreed, total),
                          kappa=stats.cohens_kappa(table))


def slices(f: ReportFilters, rows: Iterable[Mapping[str, Any]]) -> Slices:
    """`rows`: (region, local capture date, local hour) -> volume, automation,
    out-of-domain, confidence and agreement (the keys `Slice.add` reads). Weekday, region,
    hour, day and night are sums of them."""
    regions = f.deployment.regions.all()
    if f.region:
        regions = regions.filter(code=f.region)
    by_region = {rid: Slice(code) for rid, code in regions.values_list("pk", "code")}
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


def inputs(rows: Iterable[Mapping[str, Any]]) -> list[InputDay]:
    """`rows`: (local capture day, n, ood, conf_sum, conf_n) of the compared model's answers
    on every case captured in the period, decided or not: a shift shows in the shadow stage
    as soon as cases arrive."""
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


def drift_days(rows: Iterable[Mapping[str, Any]], *, last: int = RECENT_DAYS) -> list[date]:
    """The `last` local days among `rows` (those with predictions), oldest first."""
    return sorted({row["day"] for row in rows if row["day"] is not None})[-last:]


def drift(regions: Mapping[int, str], rows: Iterable[Mapping[str, Any]],
          samples: Mapping[tuple[int, date], FeatureSample],
          reference: np.ndarray | None, *, days: Iterable[date]) -> list[DriftCell]:
    """Per region and local day of `days`, before any review. `regions`: id -> code; `rows`:
    (region id, local day, n, ood) of the compared model's answers; `samples`: its case
    features per (region id, day); `reference`: its reference features (None: none fitted).
    The kernel's bandwidth is measured once on the reference, so every cell is judged on the
    same scale."""
    judged = set(days)
    cells: dict[tuple[int, date], DriftCell] = {}
    for row in rows:
        if row["day"] not in judged:
            continue
        key = (row["region"], row["day"])
        cell = cells.setdefault(key, DriftCell(regions[row["region"]], row["day"]))
        cell.predicted += row["n"]
        cell.ood += row["ood"]
    bandwidth = median_bandwidth(reference) if reference is not None else None
    for key, cell in cells.items():
        sample = samples.get(key)
        cell.compared = sample.total if sample is not None else 0
        if sample is not None and sample.total >= MIN_CASES and reference is not None:
            cell.test = drift_test(sample.rows, reference, bandwidth=bandwidth)
    return sorted(cells.values(), key=lambda c: (c.region, c.key))


def model_comparison(f: ReportFilters, rows: Iterable[Mapping[str, Any]]) -> list[Comparison]:
    """`rows`: per other model version, its counts against the compared one on the same
    human-decided cases (n, agreed, compared_agreed, challenger_only, compared_only)."""
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


def audit_estimate(table: list[tuple[float, int, int]], automated: int) -> AuditEstimate:
    """`table`: (audit rate, audits, agreed) of the audit reviews of model decisions, each
    weighted by 1/audit rate of the policy version that sampled it; a blind answer that is
    not a label counts as not agreeing (the model's action was not confirmed). `automated`:
    the model decisions under the filters."""
    return AuditEstimate(weighted=stats.inverse_rate_weighted(table),
                         raw=proportion(sum(k for *_, k in table),
                                             sum(n for _, n, _ in table)),
                         automated=automated)


def action_mix(f: ReportFilters, rows: Iterable[tuple[str, str, bool, str, int]]
               ) -> list[stats.MixTest]:
    """Per region, and per scope cell (rule x region) the model has decided in: the labels
    decided during the shadow stage against those decided since (any later stage). Not
    narrowed by the stage or reason filters: the comparison spans the stages. `rows`:
    (region code, rule, shadow, label, n)."""
    labels = list(f.deployment.labels)
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
