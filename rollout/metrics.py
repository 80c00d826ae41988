"""/metrics for Prometheus: a collector that asks the database at each scrape.

Every figure is an aggregate query (no rows are loaded). Counts that only grow are counters
(`*_total`); windowed figures (agreement, automation, latency of the last minutes) are gauges
and a gauge histogram, since a window can shrink.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any, cast

from django.conf import settings
from django.db.models import Count, F, Min, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from inference.models import Prediction
from reviewplatform.models import Decision, Deployment, ReviewTask
from reviewplatform.selectors import audits_waiting

from . import guardrails
from .models import Stage
from .selectors import policy_current
from .verdicts import Verdict

LATENCY_BUCKETS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class PlatformCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily
                                  | GaugeHistogramMetricFamily]:
        now = timezone.now()
        deployments = dict(Deployment.objects.values_list("pk", "slug"))
        yield from self._queue(now, deployments)
        yield from self._predictions(now, deployments)
        yield from self._decisions(now, deployments)
        yield from self._rollout(deployments)

    def _queue(self, now, deployments):  # type: ignore[no-untyped-def]
        depth = GaugeMetricFamily("review_queue_depth", "Review tasks waiting (open or claimed)",
                                  labels=["deployment", "reason", "status"])
        oldest = GaugeMetricFamily("review_queue_oldest_waiting_seconds",
                                   "Age of the oldest open review task",
                                   labels=["deployment", "reason"])
        rows = (ReviewTask.objects.exclude(status=ReviewTask.Status.DONE)
                .values_list("case__deployment_id", "reason", "status")
                .annotate(n=Count("id"), oldest=Min("created_at",
                                                     filter=Q(status=ReviewTask.Status.OPEN)))
                .order_by())
        for deployment_id, reason, status, n, first in rows:
            slug = deployments.get(deployment_id, "")
            depth.add_metric([slug, reason, status], n)
            if first is not None:
                oldest.add_metric([slug, reason], (now - first).total_seconds())
        yield depth
        yield oldest
        audits = GaugeMetricFamily(
            "oldest_audit_age_seconds",
            "Age of the oldest open audit task (0 when none waits): the freshness of the "
            "guardrails' evidence", labels=["deployment"])
        for wait in audits_waiting(now=now):
            audits.add_metric([wait.slug], wait.seconds or 0.0)
        yield audits

    def _predictions(self, now, deployments):  # type: ignore[no-untyped-def]
        total = CounterMetricFamily("predictions", "Predictions stored",
                                    labels=["deployment", "model_version", "status"])
        for deployment_id, name, status, n in (
                Prediction.objects.values_list("model_version__deployment_id",
                                               "model_version__name", "status")
                .annotate(n=Count("id")).order_by()):
            total.add_metric([deployments.get(deployment_id, ""), name, status], n)
        yield total
        window = timedelta(minutes=settings.METRICS_WINDOW_MINUTES)
        recent = Prediction.objects.filter(created_at__gte=now - window)
        per_second = GaugeMetricFamily("predictions_per_second",
                                       "Predictions a second over the metrics window",
                                       labels=["deployment"])
        buckets = {f"le_{b}": Count("id", filter=Q(latency_ms__lte=b))
                   for b in LATENCY_BUCKETS_MS}
        latency = GaugeHistogramMetricFamily(
            "prediction_latency_ms", "Prediction latency over the metrics window (ms)",
            labels=["deployment", "model_version"])
        rows = (recent.values("model_version__deployment_id", "model_version__name")
                .annotate(n=Count("id"), timed=Count("latency_ms"),
                          total_ms=Sum("latency_ms"), **buckets)
                .order_by())
        for row in cast(Iterable[dict[str, Any]], rows):
            slug = deployments.get(row["model_version__deployment_id"], "")
            per_second.add_metric([slug], row["n"] / window.total_seconds())
            latency.add_metric(
                [slug, row["model_version__name"]],
                [(str(b), row[f"le_{b}"]) for b in LATENCY_BUCKETS_MS]
                + [("+Inf", row["timed"])], row["total_ms"] or 0.0)
        yield per_second
        yield latency

    def _decisions(self, now, deployments):  # type: ignore[no-untyped-def]
        since = now - timedelta(days=settings.METRICS_AGREEMENT_DAYS)
        agreement = GaugeMetricFamily(
            "rollout_agreement", "Champion agreement with human decisions, recent window",
            labels=["deployment", "region"])
        compared = GaugeMetricFamily("rollout_agreement_n", "Cases behind rollout_agreement",
                                     labels=["deployment", "region"])
        rows = (Prediction.objects.champion()
                .filter(case__decision__source=Decision.Source.HUMAN,
                        case__decision__decided_at__gte=since)
                .values_list("case__deployment_id", "case__region__code")
                .annotate(n=Count("id"), agreed=Count("id",
                                                      filter=Q(label=F("case__decision__label"))))
                .order_by())
        for deployment_id, region, n, agreed in rows:
            slug = deployments.get(deployment_id, "")
            agreement.add_metric([slug, region], agreed / n if n else 0.0)
            compared.add_metric([slug, region], n)
        yield agreement
        yield compared
        automation = GaugeMetricFamily("rollout_automation_rate",
                                       "Share of recent decisions made by the model",
                                       labels=["deployment"])
        for deployment_id, n, by_model in (
                Decision.objects.filter(decided_at__gte=since)
                .values_list("case__deployment_id")
                .annotate(n=Count("id"), by_model=Count("id", filter=Q(source="model")))
                .order_by()):
            automation.add_metric([deployments.get(deployment_id, "")], by_model / n)
        yield automation

    def _rollout(self, deployments):  # type: ignore[no-untyped-def]
        stage = GaugeMetricFamily("rollout_stage", "1 for the stage a deployment is in",
                                  labels=["deployment", "stage"])
        cells = GaugeMetricFamily(
            "rollout_guardrail_state",
            "Guardrail verdict per scope cell and check: 0 pass, 1 inconclusive, 2 fail",
            labels=["deployment", "rule", "region", "check"])
        paused = GaugeMetricFamily("rollout_cell_paused", "1 where a guardrail paused a cell",
                                   labels=["deployment", "rule", "region"])
        code = {Verdict.PASS: 0, Verdict.INCONCLUSIVE: 1, Verdict.FAIL: 2}
        for deployment in Deployment.objects.filter(pk__in=deployments):
            current = policy_current(deployment_id=deployment.pk).stage
            for name in Stage.values:
                stage.add_metric([deployment.slug, name], 1.0 if name == current else 0.0)
            for cell in guardrails.guardrails_recent(deployment=deployment):
                labels = [deployment.slug, cell.rule, cell.region]
                cells.add_metric([*labels, "agreement"], code[cell.agreement_verdict])
                cells.add_metric([*labels, "out_of_domain"], code[cell.ood_verdict])
                paused.add_metric(labels, 1.0 if cell.paused else 0.0)
        yield stage
        yield cells
        yield paused


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        header = request.headers.get("Authorization", "")
        return hmac.compare_digest(header.encode(), f"Bearer {token}".encode())
    return bool(request.user.is_authenticated and request.user.is_staff)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return HttpResponse("metrics need the bearer token or a staff login\n", status=403,
                            content_type="text/plain")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
