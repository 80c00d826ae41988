"""The review chain of a case: when an answer decides it, and which review comes next.

The final decision of a case (docs/review.md):
- a first review decides the case, unless it needs a second opinion: the case is in the
  deployment's sampled share (`second_opinion_rate`), or the reviewer gave a label that differs
  from a confident champion (confidence at or above the policy version's threshold);
- a second opinion (blind, by someone else) that agrees decides the case; one that disagrees
  escalates it to a senior reviewer (blind), whose answer decides;
- a case that already has a Decision (the model's, for an audit) keeps it: the chain then only
  measures. Gold tasks never touch the chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from reviewplatform.models import Review, ReviewTask


def sampled_for_second_opinion(case_id: int, rate: float) -> bool:
    """A stable draw per case: the same case is always in or out of the sampled share."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(f"second-opinion:{case_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < rate


def first_answer(task: ReviewTask) -> str | None:
    """The answer a follow-up checks: its `follows`, else the case's first chain review."""
    if task.follows is not None:
        return task.follows.answer
    first = (Review.objects.filter(case_id=task.case_id)
             .exclude(task__reason__in=[ReviewTask.Reason.GOLD, ReviewTask.Reason.SECOND_OPINION,
                                        ReviewTask.Reason.ESCALATION])
             .exclude(task=task).order_by("created_at", "id").first())
    return None if first is None else first.answer


def follow_up_reason(
    *,
    task: ReviewTask,
    answer: str,
    labels: list[str],
    second_opinion_rate: float,
    threshold: float,
    champion: Callable[[], tuple[str, float | None] | None],
    first_answer: Callable[[], str | None],
) -> str | None:
    """The review the chain needs next (module docstring), or None when this answer concludes
    it. `champion` (label, confidence) and `first_answer` are looked up only when needed."""
    reason = task.reason
    if reason in (ReviewTask.Reason.GOLD, ReviewTask.Reason.ESCALATION):
        return None
    if reason == ReviewTask.Reason.SECOND_OPINION:
        first = first_answer()
        return ReviewTask.Reason.ESCALATION if first is not None and first != answer else None
    if sampled_for_second_opinion(task.case_id, second_opinion_rate):
        return ReviewTask.Reason.SECOND_OPINION
    if answer not in labels:
        return None  # "cannot tell" and "out of domain" are no competing label
    predicted = champion()
    if (predicted is not None and predicted[1] is not None and predicted[1] >= threshold
            and predicted[0] != answer):
        return ReviewTask.Reason.SECOND_OPINION
    return None
