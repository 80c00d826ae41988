"""Writes for the cases domain: deployments' rows, API keys, cases and gold cases. The review
queue's writes are in `review.services`; a case's state changes only in `lifecycle`."""

from .api_keys import api_key_create, api_key_mark_used, api_key_revoke
from .cases import (
    case_gold_mark,
    case_gold_unmark,
    case_images_deleted_on_error,
    case_submit,
    deployment_store,
)
from .retention import case_images_expire

__all__ = [
    "api_key_create",
    "api_key_mark_used",
    "api_key_revoke",
    "case_gold_mark",
    "case_gold_unmark",
    "case_images_deleted_on_error",
    "case_images_expire",
    "case_submit",
    "deployment_store",
]
