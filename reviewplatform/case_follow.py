"""What API clients read of their cases: each case with its decision and its timeline.

The timeline is read in the same query as the cases (one correlated subquery per step, each
on an index of the case's own rows), so a page of 200 cases costs one query, not one per case:

- received: the case's `created_at`;
- predicted: the first prediction stored for it (a failed one counts: the step happened);
- routed: where the rollout sent it: to the model (its decision's time) or to review (the
  first review task with a routing reason: audits, second opinions, escalations and gold
  tasks come later and are not the route);
- claimed: the earliest claim on record of its review tasks (gold tasks aside; a task handed
  back forgets its claim);
- decided: its Decision's `decided_at`.

Sits above the core and inference (it reads predictions), beside the API that uses it.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import OuterRef, QuerySet, Subquery

from inference.models import Prediction

from .models import Case, ReviewTask
from .selectors import cases_visible_to

Reason = ReviewTask.Reason
# Reasons of a task that follows routing instead of being the route itself.
NOT_A_ROUTE = [Reason.AUDIT, Reason.SECOND_OPINION, Reason.ESCALATION, Reason.GOLD]


def cases_followed(*, user: User, cases: QuerySet[Case] | None = None) -> QuerySet[Case]:
    """The cases `user` may read (or `cases`, when the caller decided that), with their
    decision (its policy version and the model version of its prediction) joined and the
    timeline annotated: `predicted_at`, `routed_at`, `routed_reason`, `routed_rule`,
    `claimed_at`. Newest first."""
    tasks = ReviewTask.objects.filter(case=OuterRef("pk"))
    route = tasks.exclude(reason__in=NOT_A_ROUTE).order_by("created_at", "id")
    claim = (tasks.exclude(reason=Reason.GOLD).filter(claimed_at__isnull=False)
             .order_by("claimed_at"))
    prediction = Prediction.objects.filter(case=OuterRef("pk")).order_by("created_at")
    return ((cases_visible_to(user=user) if cases is None else cases)
            .select_related("deployment", "region", "decision__policy_version",
                            "decision__prediction__model_version")
            .annotate(predicted_at=Subquery(prediction.values("created_at")[:1]),
                      routed_at=Subquery(route.values("created_at")[:1]),
                      routed_reason=Subquery(route.values("reason")[:1]),
                      routed_rule=Subquery(route.values("rule")[:1]),
                      claimed_at=Subquery(claim.values("claimed_at")[:1]))
            .order_by("-created_at", "-id"))


def case_followed_new(case: Case) -> Case:
    """A case just stored, as `cases_followed` reads it, without reading it again: no decision
    and no timeline step after `received` yet."""
    Case._meta.get_field("decision").set_cached_value(case, None)  # type: ignore[union-attr]
    case.predicted_at = case.routed_at = None  # type: ignore[attr-defined]
    case.routed_reason = case.routed_rule = case.claimed_at = None  # type: ignore[attr-defined]
    return case
