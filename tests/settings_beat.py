"""Settings of the `celery beat` that end-to-end tests start: beat's sweep of stale cases and
the webhooks drain run every second, and nothing else is scheduled."""

from reviewplatform.settings.test import *  # noqa: F403

CELERY_BEAT_SCHEDULE = {
    "requeue-stale-cases": {"task": "reviewplatform.tasks.cases_requeue_stale", "schedule": 1.0},
    "webhooks-drain": {"task": "reviewplatform.tasks.webhooks_drain", "schedule": 1.0},
}
