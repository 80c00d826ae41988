"""The features the report's drift cells compare (`drift`), sampled in the database.

Per region and local capture day, at most `drift.CAP` of the compared model's case features,
taken in a fixed pseudo-random order (the md5 of the case id: the same sample on every load,
and no bias towards early or late cases), with the number of cases that have features; and
at most CAP features of the model version's reference set, in the same kind of order. Two
statements for the whole report, whatever the number of cases: the statistic is not a count
the database could keep, so only these capped samples leave it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
from django.db.models import CharField, Count, DateField, F, Func, Window
from django.db.models.expressions import BaseExpression
from django.db.models.functions import MD5, Cast, RowNumber

from inference.models import Prediction, ReferenceImage

from .drift import CAP
from .filters import ReportFilters


class LocalDay(Func):
    """The date of a capture time in a zone (`LocalDay(time, zone)`): the region's own day."""

    arg_joiner = " AT TIME ZONE "
    template = "((%(expressions)s)::date)"
    output_field = DateField()


@dataclass(frozen=True)
class FeatureSample:
    """One region-day's case features: how many cases have them, and the sample taken."""

    total: int
    rows: np.ndarray


def case_feature_samples(f: ReportFilters, *, cap: int = CAP
                         ) -> dict[tuple[int, date], FeatureSample]:
    """(region id, local day) -> the compared model's case features of that cell, under the
    report's period and region (stage and reason do not apply: no review is needed)."""
    cell: list[BaseExpression | F] = [
        F("case__region_id"), LocalDay("case__captured_at", "case__region__timezone")]
    rows = (Prediction.objects
            .filter(case__deployment=f.deployment, model_version_id=f.model_version_id or 0,
                    status=Prediction.Status.OK, features__isnull=False)
            .filter(f.on_case())
            .annotate(local_day=LocalDay("case__captured_at", "case__region__timezone"),
                      rank=Window(RowNumber(), partition_by=cell,
                                  order_by=[MD5(Cast("case_id", CharField())).asc(),
                                            F("case_id").asc()]),
                      total=Window(Count("id"), partition_by=cell))
            .filter(rank__lte=cap)
            .values_list("case__region_id", "local_day", "total", "features"))
    cells: dict[tuple[int, date], tuple[int, list[np.ndarray]]] = {}
    for region_id, day, total, features in rows:
        cells.setdefault((region_id, day), (total, []))[1].append(np.asarray(features))
    return {key: FeatureSample(total=total, rows=np.stack(vectors))
            for key, (total, vectors) in cells.items()}


def reference_features(model_version_id: int | None, *, cap: int = CAP) -> np.ndarray | None:
    """At most `cap` features of the version's reference set, fitted for its current artifact
    (features of an older artifact are another space); None when it has none."""
    rows = list(ReferenceImage.objects
                .filter(reference_set__model_version_id=model_version_id or 0,
                        reference_set__detector_sha256=F(
                            "reference_set__model_version__sha256"),
                        features__isnull=False)
                .order_by(MD5(Cast("id", CharField())), "id")
                .values_list("features", flat=True)[:cap])
    if len(rows) < 2:
        return None
    return np.stack([np.asarray(vector) for vector in rows])
