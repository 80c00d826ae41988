"""The features the report's drift cells compare (`drift`), sampled in the database.

Per region and local capture day, for the RECENT_DAYS most recent days of the period, at most
`drift.CAP` of the compared model's case features, taken in a fixed pseudo-random order (the
case id through a multiplicative hash: the same sample on every load, and no bias towards
early or late cases), with the number of cases that have features; and at most CAP features
of the model version's reference set, in the same kind of order. Two statements for the whole
report: the cases are ranked on narrow rows (ids, region, day) and only the sampled rows'
features are read. The statistic is not a count the database could keep, so only these capped
samples leave it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import numpy as np
from django.db import connection
from django.db.models import F, Value
from django.db.models.functions import Mod
from django.utils import timezone

from inference.models import Prediction, ReferenceImage

from .drift import CAP
from .filters import ReportFilters

# Knuth's multiplicative hash: ids in a fixed order that looks random (written out in the
# SQL below too).
_SHUFFLE = 2654435761
_WORD = 2**32

_SAMPLES_SQL = """
WITH cell AS (
    SELECT p.id, c.region_id, (c.captured_at AT TIME ZONE r.timezone)::date AS local_day,
           mod(c.id * 2654435761, 4294967296) AS shuffled, c.id AS case_id
    FROM inference_prediction AS p
    JOIN reviewplatform_case AS c ON c.id = p.case_id
    JOIN reviewplatform_region AS r ON r.id = c.region_id
    WHERE c.deployment_id = %(deployment)s AND p.model_version_id = %(version)s
      AND p.status = 'ok' AND p.features IS NOT NULL
      AND c.captured_at >= %(start)s AND c.captured_at < %(end)s
      AND (%(region)s::text = '' OR r.code = %(region)s::text)
), ranked AS (
    SELECT id, region_id, local_day,
           row_number() OVER (PARTITION BY region_id, local_day
                              ORDER BY shuffled, case_id) AS rank,
           count(*) OVER (PARTITION BY region_id, local_day) AS total
    FROM cell WHERE local_day = ANY(%(days)s)
)
SELECT ranked.region_id, ranked.local_day, ranked.total, p.features
FROM ranked JOIN inference_prediction AS p ON p.id = ranked.id
WHERE ranked.rank <= %(cap)s
"""


@dataclass(frozen=True)
class FeatureSample:
    """One region-day's case features: how many cases have them, and the sample taken."""

    total: int
    rows: np.ndarray


def _aware(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def case_feature_samples(f: ReportFilters, *, days: list[date], cap: int = CAP
                         ) -> dict[tuple[int, date], FeatureSample]:
    """(region id, local day) -> the compared model's case features of that cell, for the
    local `days` inside the report's period and region (stage and reason do not apply: no
    review is needed)."""
    if not days or f.model_version_id is None:
        return {}
    # Local days lie within a day of the server's: the time bounds only narrow the scan.
    start, end = _aware(min(days) - timedelta(days=1)), _aware(max(days) + timedelta(days=2))
    if f.start is not None:
        start = max(start, f.start)
    if f.end is not None:
        end = min(end, f.end)
    with connection.cursor() as cursor:
        cursor.execute(_SAMPLES_SQL, {
            "deployment": f.deployment.pk, "version": f.model_version_id, "start": start,
            "end": end, "region": f.region, "days": list(days), "cap": cap})
        rows = cursor.fetchall()
    vector = Prediction._meta.get_field("features")
    cells: dict[tuple[int, date], tuple[int, list[np.ndarray]]] = {}
    for region_id, day, total, features in rows:
        cells.setdefault((region_id, day), (total, []))[1].append(
            np.asarray(vector.from_db_value(features, None, connection)))
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
                .order_by(Mod(F("id") * Value(_SHUFFLE), Value(_WORD)), "id")
                .values_list("features", flat=True)[:cap])
    if len(rows) < 2:
        return None
    return np.stack([np.asarray(vector) for vector in rows])
