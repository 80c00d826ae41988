"""Writes for the cases and review domain. Every state change goes through here."""

from .cases import (
    api_key_create,
    case_gold_mark,
    case_gold_unmark,
    case_submit,
    deployment_create,
)
from .queue import (
    review_answer,
    review_claim_next,
    review_lease_renew,
    review_release,
    review_submit,
    review_task_create,
    review_tasks_rank,
    task_review_mode,
    task_shown_reason,
)

__all__ = [
    "api_key_create",
    "case_gold_mark",
    "case_gold_unmark",
    "case_submit",
    "deployment_create",
    "review_answer",
    "review_claim_next",
    "review_lease_renew",
    "review_release",
    "review_submit",
    "review_task_create",
    "review_tasks_rank",
    "task_review_mode",
    "task_shown_reason",
]
