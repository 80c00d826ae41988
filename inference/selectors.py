"""Reads for model versions: how each one does on the same live cases, and when any last
predicted. The database counts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Avg, Count, F, FilteredRelation, Max, Q

from reviewplatform.models import Decision, Deployment

from .models import ModelVersionEvent, Prediction


def model_versions_summary(*, deployment: Deployment) -> list[dict[str, Any]]:
    """Per model version: predictions, failures, out-of-domain flags, latency, agreement with
    the champion and with human decisions on the cases both saw, and its reference set (with
    its out-of-domain detector's threshold)."""
    versions = list(deployment.model_versions.order_by("-is_champion", "-is_active", "name")
                    .select_related("reference_set")
                    .defer("reference_set__detector_calibration"))
    champion = next((v for v in versions if v.is_champion), None)
    # The champion's answer on the same case, joined once (a subquery would probe it for
    # every prediction).
    champion_answer = FilteredRelation(
        "case__predictions", condition=Q(case__predictions__model_version=champion,
                                         case__predictions__status=Prediction.Status.OK))
    human = Q(case__decision__source=Decision.Source.HUMAN,
              case__decision__label__in=list(deployment.labels), status=Prediction.Status.OK)
    rows = (Prediction.objects.filter(model_version__in=versions)
            .alias(champion=champion_answer)
            .annotate(champion_label=F("champion__label"))
            .values("model_version")
            .annotate(
                n=Count("id"),
                failed=Count("id", filter=Q(status=Prediction.Status.FAILED)),
                out_of_domain=Count("id", filter=Q(out_of_domain=True)),
                latency_ms=Avg("latency_ms"),
                vs_champion_n=Count("id", filter=Q(champion_label__isnull=False,
                                                   status=Prediction.Status.OK)),
                vs_champion_agreed=Count("id", filter=Q(label=F("champion_label"),
                                                        status=Prediction.Status.OK)),
                vs_human_n=Count("id", filter=human),
                vs_human_agreed=Count("id", filter=human & Q(label=F("case__decision__label"))),
            ).order_by())
    figures: dict[int, dict[str, Any]] = {}
    for row in rows:
        values: dict[str, Any] = dict(row)
        figures[values.pop("model_version")] = values
    return [{"version": v, **figures.get(v.pk, {"n": 0})} for v in versions]


def model_version_events(*, deployment: Deployment, limit: int = 50) -> list[ModelVersionEvent]:
    return list(ModelVersionEvent.objects.filter(model_version__deployment=deployment)
                .select_related("model_version", "actor")[:limit])



def last_prediction_at() -> datetime | None:
    """When any worker last stored a prediction (None: never)."""
    return Prediction.objects.aggregate(last=Max("created_at"))["last"]
