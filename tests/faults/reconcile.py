"""The counts every fault ends with: what went in came out once.

For the cases a fault pushed through (by their external ids): each was stored exactly once;
none waits before routing; each has one prediction per active model version; each is decided
once or waits in review (cases in = decisions + cases waiting); each decision has one
`case.decided` event; and no endpoint has two deliveries of one event. The database counts.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from django.db.models import Count, Q, QuerySet

from inference.models import ModelVersion, Prediction
from reviewplatform.models import Case, CaseEvent, Decision, Deployment, Review, ReviewTask
from webhooks.models import WebhookDelivery


@dataclass
class Tally:
    """A fault's figures: `lost` and `duplicated` must be zero."""

    fault: str
    pushed: int
    stored: int = 0
    decided: int = 0
    waiting: int = 0
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)
    #: what the fault did, in a few words (when it struck, what it left)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.fault}: {self.pushed} cases pushed, {self.stored} stored, "
                f"{self.decided} decided, {self.waiting} waiting in review; "
                f"lost {self.lost}, duplicated {self.duplicated}"
                + "".join(f"\n    {note}" for note in self.notes))


def _extra(rows: Collection[int]) -> int:
    """Rows beyond the first of each group (counts of rows per group)."""
    return sum(n - 1 for n in rows if n > 1)


def _per(queryset: QuerySet, *fields: str) -> list[int]:
    """Rows per group of `fields`, counted in the database."""
    return [row["n"] for row in queryset.values(*fields).annotate(n=Count("id")).order_by()]


def reconcile(*, fault: str, deployment: Deployment, external_ids: Collection[str],
              notes: Collection[str] = ()) -> Tally:
    """Count the fault's cases and everything written for them; `Tally.problems` names each
    count that does not reconcile (empty: all do)."""
    wanted = set(external_ids)
    tally = Tally(fault=fault, pushed=len(wanted), notes=list(notes))
    problems = tally.problems
    cases = Case.objects.filter(deployment=deployment, external_id__in=wanted)
    per_id = dict(cases.values_list("external_id").annotate(n=Count("id")).order_by())
    tally.stored = len(per_id)
    missing = wanted - set(per_id)
    copies = _extra(per_id.values())
    if missing:
        problems.append(f"{len(missing)} submitted cases not stored, e.g. {sorted(missing)[:5]}")
    if copies:
        problems.append(f"{copies} cases stored twice")

    unrouted = list(cases.filter(status=Case.Status.RECEIVED).values_list("id", flat=True))
    if unrouted:
        problems.append(f"{len(unrouted)} cases still wait before routing, e.g. {unrouted[:5]}")

    # One prediction per case and active model version.
    versions = set(ModelVersion.objects.filter(deployment=deployment, is_active=True)
                   .values_list("id", flat=True))
    predictions = Prediction.objects.filter(case__in=cases)
    pairs = list(predictions.values_list("case_id", "model_version_id").annotate(n=Count("id"))
                 .order_by())
    predicted = {(case_id, version_id) for case_id, version_id, _ in pairs}
    expected = {(case_id, version_id) for case_id in cases.values_list("id", flat=True)
                for version_id in versions}
    unpredicted = expected - predicted
    double_predictions = _extra([n for _, _, n in pairs])
    if unpredicted:
        problems.append(f"{len(unpredicted)} (case, model version) pairs without a prediction")
    if double_predictions:
        problems.append(f"{double_predictions} predictions made twice")

    # Decided once, or waiting in review.
    decisions = Decision.objects.filter(case__in=cases)
    tally.decided = decisions.count()
    double_decisions = _extra(_per(decisions, "case_id"))
    if double_decisions:
        problems.append(f"{double_decisions} decisions made twice")
    wrong_status = cases.filter(
        Q(status=Case.Status.DECIDED, decision__isnull=True)
        | Q(decision__isnull=False, status__in=[Case.Status.RECEIVED, Case.Status.IN_REVIEW])
    ).count()
    if wrong_status:
        problems.append(f"{wrong_status} cases whose status does not match their decision")
    in_review = cases.filter(status=Case.Status.IN_REVIEW)
    tally.waiting = in_review.count()
    idle = in_review.exclude(review_tasks__status__in=[ReviewTask.Status.OPEN,
                                                       ReviewTask.Status.CLAIMED]).count()
    if idle:
        problems.append(f"{idle} cases in review without an open task")
    if tally.stored != tally.decided + tally.waiting + len(unrouted):
        problems.append(f"cases in ({tally.stored}) != decisions ({tally.decided}) + waiting "
                        f"({tally.waiting})")
    double_reviews = _extra(_per(Review.objects.filter(case__in=cases), "task_id"))
    if double_reviews:
        problems.append(f"{double_reviews} review tasks answered twice")

    # One `case.decided` event per decision, one delivery per endpoint and event.
    events = CaseEvent.objects.filter(case__in=cases, type=CaseEvent.Type.DECIDED)
    per_decided = dict(events.values_list("case_id").annotate(n=Count("id")).order_by())
    decided_ids = set(decisions.values_list("case_id", flat=True))
    untold = decided_ids - set(per_decided)
    double_events = _extra(per_decided.values())
    stray = set(per_decided) - decided_ids
    if untold:
        problems.append(f"{len(untold)} decisions without a case.decided event")
    if double_events or stray:
        problems.append(f"{double_events} case.decided events told twice, {len(stray)} "
                        "without a decision")
    double_deliveries = _extra(_per(WebhookDelivery.objects.filter(event__case__in=cases),
                                    "endpoint_id", "event_uid"))
    if double_deliveries:
        problems.append(f"{double_deliveries} webhook deliveries made twice for one endpoint")

    tally.lost = len(missing) + len(unrouted) + len(unpredicted) + len(untold)
    tally.duplicated = (copies + double_predictions + double_decisions + double_reviews
                        + double_events + len(stray) + double_deliveries)
    return tally
