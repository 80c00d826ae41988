"""Writes for rollout policies (`policy`), their scheduled changes (`schedule`) and the
creation of a deployment with its first policy (`deployment`)."""

from .deployment import deployment_create
from .policy import (
    policy_cell_pause,
    policy_cell_resume,
    policy_change,
    policy_evidence,
    policy_pause,
    policy_publish,
    policy_rollback,
    policy_spec_validate,
)
from .schedule import policy_schedule, policy_schedule_cancel, scheduled_changes_apply

__all__ = [
    "deployment_create",
    "policy_cell_pause",
    "policy_cell_resume",
    "policy_change",
    "policy_evidence",
    "policy_pause",
    "policy_publish",
    "policy_rollback",
    "policy_schedule",
    "policy_schedule_cancel",
    "policy_spec_validate",
    "scheduled_changes_apply",
]
