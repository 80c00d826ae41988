"""Reads for model versions: how each one does on the same live cases, and when any last
predicted. The database counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, F, FilteredRelation, Max, OuterRef, Q, Subquery
from django.utils import timezone

from reviewplatform.models import Decision, Deployment

from .models import ModelVersion, ModelVersionEvent, Prediction

# How far back a model version's failures make it "failing" (the models page, the alert).
FAILING_WINDOW = timedelta(minutes=10)


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
    failing = {f.version.pk: f for f in versions_failing(deployment=deployment)}
    return [{"version": v, **figures.get(v.pk, {"n": 0}), "failing": failing.get(v.pk)}
            for v in versions]


@dataclass(frozen=True)
class Failing:
    """An active model version whose predictions failed lately: how many of how many, and
    the last failure's reason."""

    version: ModelVersion
    failed: int
    n: int
    last_error: str
    since: datetime


def versions_failing(*, deployment: Deployment | None = None, now: datetime | None = None
                     ) -> list[Failing]:
    """Active model versions with failed predictions within FAILING_WINDOW (of every
    deployment, or of one)."""
    since = (now or timezone.now()) - FAILING_WINDOW
    recent = Q(predictions__created_at__gte=since)
    failed = recent & Q(predictions__status=Prediction.Status.FAILED)
    last_error = (Prediction.objects.filter(model_version=OuterRef("pk"),
                                            status=Prediction.Status.FAILED)
                  .order_by("-created_at", "-id").values("error")[:1])
    versions = ModelVersion.objects.filter(is_active=True).select_related("deployment")
    if deployment is not None:
        versions = versions.filter(deployment=deployment)
    rows = (versions.annotate(n=Count("predictions", filter=recent),
                              failed=Count("predictions", filter=failed),
                              last_error=Subquery(last_error))
            .filter(failed__gt=0).order_by("deployment__slug", "name"))
    return [Failing(version=v, failed=v.failed, n=v.n,  # type: ignore[attr-defined]
                    last_error=v.last_error or "", since=since)  # type: ignore[attr-defined]
            for v in rows]


def model_version_events(*, deployment: Deployment, limit: int = 50) -> list[ModelVersionEvent]:
    return list(ModelVersionEvent.objects.filter(model_version__deployment=deployment)
                .select_related("model_version", "actor")[:limit])



def last_prediction_at() -> datetime | None:
    """When any worker last stored a prediction (None: never)."""
    return Prediction.objects.aggregate(last=Max("created_at"))["last"]
