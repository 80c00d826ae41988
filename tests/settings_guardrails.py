"""Settings of the `celery beat` and worker that the guardrail end-to-end test starts
(tests/test_guardrails_end_to_end.py).

Beat sends `rollout.tasks.guardrails_run` every second (every minute in production) and
nothing else. The worker imports fastai when it starts (tests/settings_worker.py) and writes
the admins' alert emails as files under GUARDRAIL_TEST_MAIL_DIR, where the test reads them.
"""

import os

from tests.settings_worker import *  # noqa: F403

CELERY_BEAT_SCHEDULE = {
    "guardrails": {"task": "rollout.tasks.guardrails_run", "schedule": 1.0},
}

ROLLOUT_ALERT_EMAILS = ["rollout-admins@example.com"]
if os.environ.get("GUARDRAIL_TEST_MAIL_DIR"):
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = os.environ["GUARDRAIL_TEST_MAIL_DIR"]
