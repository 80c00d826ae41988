"""The disagreements gallery: human decisions the compared model answered otherwise, each
with the reference images nearest to it in the model's own features."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.db import connection
from django.db.models import F, OuterRef, QuerySet, Subquery

from reviewplatform.models import Decision

from ..models import Adjudication
from .filters import ReportFilters, compared, decisions_filtered

NEAREST_REFERENCES = 3


@dataclass(frozen=True)
class ReferenceNeighbour:
    image_id: int
    label: str
    distance: float  # cosine distance of the model's features, 0 (same direction) to 2


@dataclass(frozen=True)
class Disagreement:
    case_id: int
    external_id: str
    region: str
    timezone: str
    captured_at: Any
    human: str
    model: str
    confidence: float | None
    out_of_domain: bool
    adjudicated: str | None
    image_deleted_at: Any  # set when the image was deleted under retention
    references: tuple[ReferenceNeighbour, ...] = ()



def _disagreeing(f: ReportFilters, *, human: str, model: str) -> QuerySet[Decision]:
    # Excluding on an annotation of the model's label: a condition across the multi-valued
    # relation itself would join the predictions a second time.
    qs = (decisions_filtered(f).filter(compared(f)).annotate(model_label=F("mp__label"))
          .exclude(label=F("model_label")))
    if human:
        qs = qs.filter(label=human)
    if model:
        qs = qs.filter(mp__label=model)  # type: ignore[misc]
    return qs


def disagreements_count(f: ReportFilters, *, human: str = "", model: str = "") -> int:
    """How many `disagreements` there are, counted by the database."""
    return _disagreeing(f, human=human, model=model).count()


def disagreements(f: ReportFilters, *, human: str = "", model: str = "", limit: int = 48,
                  offset: int = 0) -> list[Disagreement]:
    """Human decisions the compared model answered otherwise, the most confident model first
    (like fastai's plot_top_losses): the cases that show where it is wrong and sure of it."""
    qs = _disagreeing(f, human=human, model=model)
    newest = Subquery(Adjudication.objects.filter(case_id=OuterRef("case_id"))
                      .order_by("-created_at", "-id").values("label")[:1])
    rows = (qs.annotate(adjudicated=newest)
            .values_list("case_id", "case__external_id", "case__region__code",
                         "case__region__timezone", "case__captured_at", "label", "mp__label",
                         "mp__confidence", "mp__out_of_domain", "adjudicated",
                         "case__image_deleted_at")  # type: ignore[misc]
            .order_by(F("mp__confidence").desc(nulls_last=True), "-case_id")
            [offset:offset + limit])
    items = [Disagreement(*row) for row in rows]
    nearest = nearest_references(case_ids=[d.case_id for d in items],
                                 model_version_id=f.model_version_id)
    return [replace(d, references=tuple(nearest.get(d.case_id, []))) for d in items]


# For each case, its prediction's nearest reference images (a top-k sort of one reference
# set per case, a few hundred rows): one statement for a whole page. Reference features
# count only when fitted for the version's current artifact.
_NEAREST_SQL = """
SELECT c.case_id, r.id, r.label, r.distance
FROM unnest(%(case_ids)s::bigint[]) AS c(case_id)
JOIN inference_prediction AS p
  ON p.case_id = c.case_id AND p.model_version_id = %(version)s AND p.status = 'ok'
     AND p.features IS NOT NULL
JOIN inference_modelversion AS v ON v.id = p.model_version_id
JOIN inference_referenceset AS s
  ON s.model_version_id = v.id AND s.detector_sha256 = v.sha256
CROSS JOIN LATERAL (
    SELECT i.id, i.label, i.features <=> p.features AS distance
    FROM inference_referenceimage AS i
    WHERE i.reference_set_id = s.id AND i.features IS NOT NULL
    ORDER BY i.features <=> p.features, i.id
    LIMIT %(per_case)s
) AS r
ORDER BY c.case_id, r.distance, r.id
"""


def nearest_references(*, case_ids: list[int], model_version_id: int | None,
                       per_case: int = NEAREST_REFERENCES
                       ) -> dict[int, list[ReferenceNeighbour]]:
    """case id -> the reference images of the version's reference set nearest to the case's
    prediction by that version (cosine distance of the features), nearest first; in one
    statement. Cases without features or a fitted reference set get none."""
    if not case_ids or model_version_id is None:
        return {}
    out: dict[int, list[ReferenceNeighbour]] = {}
    with connection.cursor() as cursor:
        cursor.execute(_NEAREST_SQL, {"case_ids": case_ids, "version": model_version_id,
                                      "per_case": per_case})
        for case_id, image_id, label, distance in cursor.fetchall():
            out.setdefault(case_id, []).append(
                ReferenceNeighbour(image_id=image_id, label=label, distance=distance))
    return out
