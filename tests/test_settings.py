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
    "REVIEW_UNDO_SECONDS", "AUDIT_SERVE_WITHIN_SECONDS",
    "PREDICTION_STALE_SECONDS", "INFERENCE_DEVICE", "LOG_LEVEL", "DB_CONN_MAX_AGE",
    "API_THROTTLE_RATE",
    "ALLOWED_IMAGE_FORMATS", "CAPTURED_AT_MAX_FUTURE_SECONDS", "CASE_METADATA_MAX_BYTES",
    "IDEMPOTENCY_KEY_HOURS", "CASE_BATCH_MAX",
    "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD", "EMAIL_USE_TLS", "METRICS_TOKEN",
    "ROLLOUT_ALERT_WEBHOOK_URL", "ROLLOUT_ALERT_WEBHOOK_SECRET", "AXES_FAILURE_LIMIT",
    "AXES_COOLOFF_MINUTES", "SECURE_PROXY_SSL_HEADER", "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD",
}
VALID = {"SECRET_KEY": "a-test-secret", "REDIS_URL": "redis://127.0.0.1:6390/0"}


def failure(result: subprocess.CompletedProcess[str]) -> str:
    """The message of the exception that stopped start-up (not the traceback's source lines)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def django_setup(code: str = "import django; django.setup()", *,
                 settings: str = "reviewplatform.settings.base",
                 **variables: str) -> subprocess.CompletedProcess[str]:
    """Start Django with these settings and exactly these variables in the environment (none
    of the test run's own: the browser tests' DJANGO_ALLOW_ASYNC_UNSAFE fails the deployment
    checks, as it should)."""
    env = {name: value for name, value in os.environ.items()
           if name not in READ_BY_SETTINGS and name != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env["DJANGO_SETTINGS_MODULE"] = settings
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
    ("REVIEW_UNDO_SECONDS", "0"),
    ("REVIEW_UNDO_SECONDS", "ten"),
    ("AUDIT_SERVE_WITHIN_SECONDS", "-1"),
    ("AUDIT_SERVE_WITHIN_SECONDS", "15 minutes"),
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
    ("FIELD_ENCRYPTION_KEYS", "not-a-fernet-key"),
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


def test_no_secret_has_a_default_in_the_code():
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(repr((s.EMAIL_HOST_PASSWORD, s.ROLLOUT_ALERT_WEBHOOK_SECRET, "
            "s.METRICS_TOKEN, s.DATABASES['default']['PASSWORD'])))")

    result = django_setup(**VALID, code=code)

    assert result.stdout.strip() == "('', '', '', '')", result.stderr


def test_it_reads_every_secret_from_the_environment():
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.SECRET_KEY, s.EMAIL_HOST_PASSWORD, s.ROLLOUT_ALERT_WEBHOOK_SECRET, "
            "s.METRICS_TOKEN, s.DATABASES['default']['PASSWORD'])")

    result = django_setup(code=code, SECRET_KEY="k1", EMAIL_HOST_PASSWORD="e2",
                          ROLLOUT_ALERT_WEBHOOK_URL="https://alerts.example.org/hook",
                          ROLLOUT_ALERT_WEBHOOK_SECRET="w3", METRICS_TOKEN="m4",
                          DATABASE_URL="postgres://reviews:d5@db.example.org/reviews")

    assert result.stdout.split() == ["k1", "e2", "w3", "m4", "d5"], result.stderr


# Production: reviewplatform.settings.production

PRODUCTION = {
    "SECRET_KEY": "vB2r-7kQ_x9LmN4pZ0aT3yW8cE5uH1jS6dF_gK2oR7iY9tU4wP0qA3zX8nM5bV1e",
    "ALLOWED_HOSTS": "reviews.example.org",
    "DATABASE_URL": "postgres://reviews:from-the-environment@db.example.org:5432/reviews",
    "REDIS_URL": "redis://redis.example.org:6379/0",
    "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto: https",
}


def production(code: str = "import django; django.setup()",
               **variables: str) -> subprocess.CompletedProcess[str]:
    return django_setup(code, settings="reviewplatform.settings.production",
                        **{**PRODUCTION, **variables})


def test_the_production_settings_pass_the_deployment_checks():
    code = ("import django; django.setup(); from django.core.management import call_command; "
            "call_command('check', deploy=True, fail_level='WARNING')")

    result = production(code)

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_the_deployment_checks_fail_the_base_settings():
    """The check above can fail: the demo's plain-HTTP settings do not pass it."""
    code = ("import django; django.setup(); from django.core.management import call_command; "
            "call_command('check', deploy=True, fail_level='WARNING')")

    result = django_setup(code, **VALID)

    assert result.returncode != 0
    assert "security.W004" in result.stderr  # no HSTS
    assert "security.W008" in result.stderr  # no redirect to HTTPS


def test_production_serves_https_only_with_secure_cookies():
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(repr((s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, "
            "s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
            "s.SECURE_PROXY_SSL_HEADER, s.DEBUG)))")

    result = production(code)

    assert result.stdout.strip() == repr(
        (True, 31536000, True, True, True, ("HTTP_X_FORWARDED_PROTO", "https"), False)
    ), result.stderr


def test_the_demo_settings_do_not_force_https():
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(repr((s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, "
            "s.SESSION_COOKIE_SECURE, s.SECURE_PROXY_SSL_HEADER)))")

    result = django_setup(code, **VALID)

    assert result.stdout.strip() == "(False, 0, False, None)", result.stderr


@pytest.mark.parametrize(("variables", "named"), [
    ({"DEBUG": "1"}, "DEBUG"),
    ({"SECRET_KEY": ""}, "SECRET_KEY"),
    ({"SECRET_KEY": "short-but-set"}, "SECRET_KEY"),
    ({"DATABASE_URL": ""}, "DATABASE_URL"),
    ({"REDIS_URL": ""}, "REDIS_URL"),
    ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS"),
    ({"SECURE_PROXY_SSL_HEADER": "https"}, "SECURE_PROXY_SSL_HEADER"),
    ({"SECURE_HSTS_SECONDS": "a year"}, "SECURE_HSTS_SECONDS"),
])
def test_production_refuses_to_start_without_what_it_needs(variables, named):
    result = production(**variables)

    assert result.returncode != 0, f"{variables} was accepted"
    assert failure(result).startswith("django.core.exceptions.ImproperlyConfigured")
    assert named in failure(result)
