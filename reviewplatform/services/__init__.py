"""Writes for the cases domain: deployments' rows, API keys, cases and gold cases. The review
queue's writes are in `review.services`; a case's state changes only in `lifecycle`."""

from .cases import (
    api_key_create,
    case_gold_mark,
    case_gold_unmark,
    case_submit,
    deployment_store,
)

__all__ = [
    "api_key_create",
    "case_gold_mark",
    "case_gold_unmark",
    "case_submit",
    "deployment_store",
]
