"""Settings fail loudly: a wrong environment stops start-up with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Every variable the settings read, so that the machine running the tests cannot leak into them.
READ_BY_SETTINGS = {
    "ENV_FILE", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "DATABASE_URL",
    "REDIS_URL", "MEDIA_ROOT", "STATIC_ROOT", "TIME_ZONE", "CELERY_TASK_ALWAYS_EAGER",
    "MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "MIN_IMAGE_SIDE", "REVIEW_LEASE_SECONDS",
    "PREDICTION_STALE_SECONDS", "INFERENCE_DEVICE", "LOG_LEVEL", "DB_CONN_MAX_AGE",
    "API_THROTTLE_RATE",
    "ALLOWED_IMAGE_FORMATS", "CAPTURED_AT_MAX_FUTURE_SECONDS", "CASE_METADATA_MAX_BYTES",
    "IDEMPOTENCY_KEY_HOURS", "CASE_BATCH_MAX",
}
VALID = {"SECRET_KEY": "a-test-secret", "REDIS_URL": "redis://127.0.0.1:6390/0"}


def failure(result: subprocess.CompletedProcess[str]) -> str:
    """The message of the exception that stopped start-up (not the traceback's source lines)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def django_setup(code: str = "import django; django.setup()",
                 **variables: str) -> subprocess.CompletedProcess[str]:
    """Start Django with the base settings and exactly these variables in the environment."""
    env = {name: value for name, value in os.environ.items() if name not in READ_BY_SETTINGS}
    env["DJANGO_SETTINGS_MODULE"] = "reviewplatform.settings.base"
    env.update(variables)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_it_starts_with_a_valid_environment():
    result = django_setup(**VALID)

    assert result.returncode == 0, result.stderr


def test_it_starts_in_debug_without_a_secret_key():
    result = django_setup(DEBUG="1")

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("variable", "value"), [
    ("REDIS_URL", "http://x"),
    ("DEBUG", "maybe"),
    ("INFERENCE_DEVICE", "tpu"),
    ("MAX_IMAGE_BYTES", "ten megabytes"),
    ("REVIEW_LEASE_SECONDS", "5"),
    ("DATABASE_URL", "mysql://reviews@127.0.0.1/reviews"),
    ("DATABASE_URL", "not a url"),
    ("ALLOWED_IMAGE_FORMATS", "JPEG,PSD"),
    ("ALLOWED_IMAGE_FORMATS", ""),
    ("CAPTURED_AT_MAX_FUTURE_SECONDS", "-1"),
    ("CAPTURED_AT_MAX_FUTURE_SECONDS", "five minutes"),
    ("CASE_METADATA_MAX_BYTES", "16 KB"),
    ("CASE_METADATA_MAX_BYTES", "1"),
    ("IDEMPOTENCY_KEY_HOURS", "0"),
    ("IDEMPOTENCY_KEY_HOURS", "a day"),
    ("CASE_BATCH_MAX", "0"),
])
def test_it_refuses_a_wrong_value(variable, value):
    result = django_setup(**{**VALID, variable: value})

    assert result.returncode != 0, f"{variable}={value} was accepted"
    assert failure(result).startswith("django.core.exceptions.ImproperlyConfigured")
    assert variable in failure(result)


def test_it_reads_the_limits_on_submitted_cases():
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.ALLOWED_IMAGE_FORMATS, s.CAPTURED_AT_MAX_FUTURE_SECONDS, "
            "s.CASE_METADATA_MAX_BYTES)")
    defaults = django_setup(**VALID, code=code)
    chosen = django_setup(**VALID, ALLOWED_IMAGE_FORMATS="png, webp",
                          CAPTURED_AT_MAX_FUTURE_SECONDS="60", CASE_METADATA_MAX_BYTES="1024",
                          code=code)

    assert defaults.stdout.strip() == "['JPEG', 'PNG', 'WEBP'] 300 16384", defaults.stderr
    assert chosen.stdout.strip() == "['PNG', 'WEBP'] 60 1024", chosen.stderr


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off():
    result = django_setup(DEBUG="0", REDIS_URL=VALID["REDIS_URL"])

    assert result.returncode != 0
    assert failure(result).startswith("django.core.exceptions.ImproperlyConfigured")
    assert "SECRET_KEY" in failure(result)
