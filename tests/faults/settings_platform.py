"""Settings of the platform's processes in the fault tests: the demo's (`settings.base`: the
shared cache and the API's throttle on Redis, DEBUG off), with beat's sweeps due every few
seconds rather than every minute, so that a fault's recovery fits in the test's time."""

from reviewplatform.settings.base import *  # noqa: F403

CELERY_BEAT_SCHEDULE = {
    **CELERY_BEAT_SCHEDULE,  # noqa: F405
    "requeue-stale-cases": {"task": "reviewplatform.tasks.cases_requeue_stale", "schedule": 2.0},
    "webhooks-drain": {"task": "reviewplatform.tasks.webhooks_drain", "schedule": 1.0},
    "stuck-cases": {"task": "reviewplatform.tasks.cases_stuck_check", "schedule": 5.0},
    "models-failing": {"task": "reviewplatform.tasks.models_failing_check", "schedule": 2.0},
}
