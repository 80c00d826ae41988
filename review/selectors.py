"""Reads for the review queue and the reviewers' figures. The database counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db.models import (
    Count,
    Exists,
    F,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Window,
)
from django.db.models.functions import RowNumber
from django.utils import timezone
from pgvector.django import CosineDistance

from inference.models import Prediction
from reviewplatform.models import Decision, GoldCase, Review, ReviewTask
from reviewplatform.stats import Proportion, proportion

from .claims import SERVING_ORDER, queue_for

WAITING = (ReviewTask.Status.OPEN, ReviewTask.Status.CLAIMED)


def _day_start(now: datetime | None = None) -> datetime:
    return timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)


def queue_counts() -> list[dict[str, Any]]:
    """Tasks waiting for a human, by deployment and reason: waiting, being reviewed, urgent,
    and the oldest one's creation time. Gold tasks are not shown (they must not stand out)."""
    rows = (ReviewTask.objects.filter(status__in=WAITING)
            .exclude(reason=ReviewTask.Reason.GOLD)
            .values("case__deployment__slug", "reason")
            .annotate(waiting=Count("id", filter=Q(status=ReviewTask.Status.OPEN)),
                      claimed=Count("id", filter=Q(status=ReviewTask.Status.CLAIMED)),
                      urgent=Count("id", filter=Q(urgent=True)),
                      oldest=Min("created_at"))
            .order_by("case__deployment__slug", "reason"))
    labels = dict(ReviewTask.Reason.choices)
    return [{**row, "reason_label": labels.get(row["reason"], row["reason"])} for row in rows]


def _medians(reviews: QuerySet[Review]) -> dict[int, float]:
    """Median seconds per reviewer, found in the database: the middle row(s) of each
    reviewer's reviews ordered by seconds."""
    rows = (reviews.annotate(
                rn=Window(RowNumber(), partition_by=[F("reviewer_id")],
                          order_by=[F("seconds").asc(), F("id").asc()]),
                n=Window(Count("id"), partition_by=[F("reviewer_id")]))
            .values_list("reviewer_id", "seconds", "rn", "n"))
    middles: dict[int, list[float]] = {}
    for reviewer_id, seconds, rn, n in rows.filter(rn__gte=(F("n") + 1) / 2,
                                                     rn__lte=F("n") / 2 + 1):
        if rn in {(n + 1) // 2, n // 2 + 1}:
            middles.setdefault(reviewer_id, []).append(seconds)
    return {reviewer: sum(values) / len(values) for reviewer, values in middles.items()}


def _gold_reviews() -> QuerySet[Review]:
    return Review.objects.filter(task__reason=ReviewTask.Reason.GOLD, case__gold__isnull=False)


@dataclass(frozen=True)
class ReviewerFigures:
    reviewer_id: int
    username: str
    today: int
    week: int
    median_seconds: float | None
    gold: Proportion


def reviewer_figures(*, reviewers: QuerySet[User], now: datetime | None = None
                     ) -> list[ReviewerFigures]:
    """Each reviewer's count today and over 7 days, median seconds per case (7 days) and
    accuracy on gold cases (all time)."""
    now = now or timezone.now()
    day, week = _day_start(now), now - timedelta(days=7)
    rows = (reviewers.annotate(
                today=Count("reviews", filter=Q(reviews__created_at__gte=day), distinct=True),
                week=Count("reviews", filter=Q(reviews__created_at__gte=week), distinct=True))
            .values_list("id", "username", "today", "week").order_by("username"))
    gold = dict(
        (reviewer, (correct, n)) for reviewer, correct, n in
        _gold_reviews().filter(reviewer__in=reviewers).values_list("reviewer_id")
        .annotate(correct=Count("id", filter=Q(answer=F("case__gold__label"))), n=Count("id"))
        .order_by().values_list("reviewer_id", "correct", "n"))
    medians = _medians(Review.objects.filter(reviewer__in=reviewers, created_at__gte=week))
    return [ReviewerFigures(reviewer_id=pk, username=username, today=today, week=n_week,
                            median_seconds=medians.get(pk), gold=proportion(*gold.get(pk, (0, 0))))
            for pk, username, today, n_week in rows]


def reviewers_active() -> QuerySet[User]:
    """Everyone who may review, or has reviewed."""
    return User.objects.filter(
        Q(groups__permissions__codename="add_review") | Q(is_superuser=True)
        | Q(Exists(Review.objects.filter(reviewer=OuterRef("pk"))))).distinct()


@dataclass(frozen=True)
class Backlog:
    waiting: int
    being_reviewed: int
    urgent: int
    oldest_created_at: datetime | None
    arrivals_per_hour: float
    answered_per_hour: float
    window_hours: float  # what the rates are counted over: 24 hours, or since the first task

    @property
    def window_words(self) -> str:
        if self.window_hours >= 2:
            return f"{self.window_hours:.0f} hours"
        return f"{max(self.window_hours * 60, 1):.0f} minutes"

    @property
    def hours_to_clear(self) -> float | None:
        """At the window's pace, net of arrivals; None when the backlog is not shrinking."""
        net = self.answered_per_hour - self.arrivals_per_hour
        total = self.waiting + self.being_reviewed
        if total == 0:
            return 0.0
        return total / net if net > 0 else None


def queue_backlog(*, now: datetime | None = None) -> Backlog:
    """The backlog against the arrival rate, and the oldest waiting task. The rates are counted
    over the last 24 hours, or since the first task where that is more recent: a platform
    started ten minutes ago has ten minutes of arrivals, not a day's."""
    now = now or timezone.now()
    tasks = ReviewTask.objects.exclude(reason=ReviewTask.Reason.GOLD)
    first = tasks.aggregate(first=Min("created_at"))["first"]
    since = max(now - timedelta(hours=24), first or now)
    hours = max((now - since).total_seconds() / 3600, 1 / 60)
    waiting = tasks.filter(status__in=WAITING).aggregate(
        waiting=Count("id", filter=Q(status=ReviewTask.Status.OPEN)),
        claimed=Count("id", filter=Q(status=ReviewTask.Status.CLAIMED)),
        urgent=Count("id", filter=Q(urgent=True)),
        oldest=Min("created_at"))
    arrived = tasks.filter(created_at__gte=since).count()
    answered = tasks.filter(status=ReviewTask.Status.DONE, completed_at__gte=since).count()
    return Backlog(waiting=waiting["waiting"], being_reviewed=waiting["claimed"],
                   urgent=waiting["urgent"], oldest_created_at=waiting["oldest"],
                   arrivals_per_hour=arrived / hours, answered_per_hour=answered / hours,
                   window_hours=hours)


def human_agreement() -> Proportion:
    """How often a second opinion agrees with the review it checks: the bar for the model."""
    pairs = Review.objects.filter(task__reason=ReviewTask.Reason.SECOND_OPINION,
                                  task__follows__isnull=False).aggregate(
        n=Count("id"), agreed=Count("id", filter=Q(answer=F("task__follows__answer"))))
    return proportion(pairs["agreed"], pairs["n"])


@dataclass(frozen=True)
class RevealEffect:
    """Blind-then-reveal reviews: how often the reviewer changed their answer after seeing the
    model's, and how often to the model's answer (automation bias)."""

    n: int
    changed: int
    changed_to_model: int


def reveal_effect() -> RevealEffect:
    champion = Prediction.objects.champion().filter(case_id=OuterRef("case_id"),
                                                    label=OuterRef("answer"))
    figures = Review.objects.filter(mode=Review.Mode.REVEALED).exclude(blind_answer="").aggregate(
        n=Count("id"),
        changed=Count("id", filter=~Q(answer=F("blind_answer"))),
        changed_to_model=Count("id", filter=~Q(answer=F("blind_answer")) & Q(Exists(champion))))
    return RevealEffect(n=figures["n"], changed=figures["changed"],
                        changed_to_model=figures["changed_to_model"])


def queue_peek_next(*, reviewer: User, after: ReviewTask) -> int | None:
    """The case the reviewer will probably get next (no lock, no claim): its image is
    prefetched while they look at the current one."""
    return (queue_for(reviewer).filter(status=ReviewTask.Status.OPEN)
            .exclude(case_id=after.case_id).order_by(*SERVING_ORDER)
            .values_list("case_id", flat=True).first())


@dataclass(frozen=True)
class RecentAnswer:
    case_id: int
    answer: str
    at: datetime
    pending: bool = False  # given on the review page, still in its undo window


def reviewer_recent(*, reviewer: User, limit: int = 5) -> list[RecentAnswer]:
    """The reviewer's last answers, newest first (gold cases included: they are answers too)."""
    return [RecentAnswer(case_id=case_id, answer=answer, at=at) for case_id, answer, at in
            Review.objects.filter(reviewer=reviewer).order_by("-created_at", "-id")
            .values_list("case_id", "answer", "created_at")[:limit]]


def reviewer_answers_since(*, reviewer: User, since: datetime) -> int:
    return Review.objects.filter(reviewer=reviewer, created_at__gte=since).count()



@dataclass(frozen=True)
class SimilarCase:
    case_id: int
    label: str  # the people's decision
    distance: float  # cosine distance of the champion's features, 0 (same direction) to 2


def similar_decided_cases(*, case_id: int, deployment_id: int, limit: int = 4
                          ) -> list[SimilarCase]:
    """The deployment's cases that people already decided, nearest first by the cosine
    distance between the champion's features of each and of this case, in one statement
    ordered by the database; none when the champion has no features for this case. Cases
    served as gold are left out (their answers must stay unseen), and so are cases whose image
    was deleted under retention (nothing to show)."""
    target = (Prediction.objects.champion().filter(case_id=case_id, features__isnull=False)
              .values("features")[:1])
    gold = GoldCase.objects.filter(case_id=OuterRef("case_id"), is_active=True,
                                   is_example=False)
    rows = (Prediction.objects.champion()
            .filter(case__deployment_id=deployment_id, features__isnull=False,
                    case__decision__source=Decision.Source.HUMAN,
                    case__image_deleted_at__isnull=True)
            .exclude(case_id=case_id)
            .exclude(Exists(gold))
            .annotate(distance=CosineDistance("features", Subquery(target)))
            .filter(distance__isnull=False)
            .order_by("distance", "case_id")
            .values_list("case_id", "case__decision__label", "distance")[:limit])
    return [SimilarCase(case_id=pk, label=label, distance=distance)
            for pk, label, distance in rows]
