"""Celery tasks of the rollout: a thin interface, run by beat."""

from __future__ import annotations

from celery import shared_task

from . import guardrails, services
from .reports.rollup import rollup_fold


@shared_task
def guardrails_run() -> int:
    """Check every deployment's guardrails; pause failing scope cells. Returns the pauses."""
    return len(guardrails.guardrails_run())


@shared_task
def scheduled_changes_apply() -> int:
    """Publish due scheduled policy changes whose evidence gate passes; hold the others."""
    return len(services.scheduled_changes_apply())


@shared_task
def report_rollup_fold() -> int:
    """Fold the cases written since the last fold into the report's rollup."""
    # Beat sends one every few seconds: one that finds another folding leaves it the work,
    # and none folds for longer than a minute at a time.
    return rollup_fold(wait=False, seconds=60)
