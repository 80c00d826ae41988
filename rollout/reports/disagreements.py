"""The disagreements gallery: human decisions the compared model answered otherwise."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import F, OuterRef, Subquery

from ..models import Adjudication
from .filters import ReportFilters, compared, decisions_filtered


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

    @property
    def captured_local(self) -> str:
        """The capture time in the region's own zone, as the review page shows it (formatted
        here: the template engine would convert it to the server's zone)."""
        return self.captured_at.astimezone(ZoneInfo(self.timezone)).strftime("%Y-%m-%d %H:%M")

    @property
    def captured_utc(self) -> str:
        return self.captured_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def disagreements(f: ReportFilters, *, human: str = "", model: str = "", limit: int = 48,
                  offset: int = 0) -> list[Disagreement]:
    """Human decisions the compared model answered otherwise, the most confident model first
    (like fastai's plot_top_losses): the cases that show where it is wrong and sure of it."""
    # Excluding on an annotation of the model's label: a condition across the multi-valued
    # relation itself would join the predictions a second time.
    qs = (decisions_filtered(f).filter(compared(f)).annotate(model_label=F("mp__label"))
          .exclude(label=F("model_label")))
    if human:
        qs = qs.filter(label=human)
    if model:
        qs = qs.filter(mp__label=model)  # type: ignore[misc]
    newest = Subquery(Adjudication.objects.filter(case_id=OuterRef("case_id"))
                      .order_by("-created_at", "-id").values("label")[:1])
    rows = (qs.annotate(adjudicated=newest)
            .values_list("case_id", "case__external_id", "case__region__code",
                         "case__region__timezone", "case__captured_at", "label", "mp__label",
                         "mp__confidence", "mp__out_of_domain", "adjudicated",
                         "case__image_deleted_at")  # type: ignore[misc]
            .order_by(F("mp__confidence").desc(nulls_last=True), "-case_id")
            [offset:offset + limit])
    return [Disagreement(*row) for row in rows]
