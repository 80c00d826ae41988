"""Settings for every environment, read once from environment variables.

Every value has a default that is safe for a one-machine demo (the demo's embedded PostgreSQL, a
local Redis, DEBUG off, plain HTTP on 127.0.0.1),
except SECRET_KEY, which must be set whenever DEBUG is off. A value that does not parse stops
start-up with a message naming the variable. Secrets (SECRET_KEY, the database password inside
DATABASE_URL, EMAIL_HOST_PASSWORD, ROLLOUT_ALERT_WEBHOOK_SECRET, METRICS_TOKEN) come only from
the environment; none has a default but the development key, which only DEBUG allows. A
deployment behind HTTPS uses the production overlay, reviewplatform.settings.production.
"""

import os
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from .envvars import (
    env_bool,
    env_choice,
    env_db_url,
    env_fernet_keys,
    env_int,
    env_list,
    env_list_of,
    env_rate,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

if env_file := os.environ.get("ENV_FILE"):
    environ.Env.read_env(env_file, overwrite=False)

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
# Keys SECRET_KEY replaced, still accepted for what they signed and encrypted (Django's).
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])
# Fernet keys for values stored encrypted (reviewplatform.encryption), newest first; unset,
# keys derived from SECRET_KEY and SECRET_KEY_FALLBACKS.
FIELD_ENCRYPTION_KEYS = env_fernet_keys("FIELD_ENCRYPTION_KEYS")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# PostgreSQL only; the default is the server `make demo` embeds (scripts/embedded_postgres.py).
DATABASES = {"default": env_db_url("DATABASE_URL",
                                   "postgres://postgres@127.0.0.1:54320/reviewplatform")}
DB_CONN_MAX_AGE = env_int("DB_CONN_MAX_AGE", 60, minimum=0)
REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6390/0",
                    schemes=("redis", "rediss", "unix"))
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
TIME_ZONE = env_str("TIME_ZONE", "UTC")
MAX_IMAGE_BYTES = env_int("MAX_IMAGE_BYTES", 10 * 1024 * 1024, minimum=1)
MAX_IMAGE_PIXELS = env_int("MAX_IMAGE_PIXELS", 40_000_000, minimum=1)
# The most images a model version's reference set may hold (a zip uploaded at onboarding).
REFERENCE_MAX_IMAGES = env_int("REFERENCE_MAX_IMAGES", 5000, minimum=10)
# A champion registered without a reference set gets one from the first this many cases that
# reviewers decided with one of its labels (beat checks every 10 minutes).
REFERENCE_FROM_REVIEWS = env_int("REFERENCE_FROM_REVIEWS", 200, minimum=10)
MIN_IMAGE_SIDE = env_int("MIN_IMAGE_SIDE", 8, minimum=1)
# Image formats a case may be submitted in (Pillow's names); others are refused.
ALLOWED_IMAGE_FORMATS = env_list_of("ALLOWED_IMAGE_FORMATS", ["JPEG", "PNG", "WEBP"],
                                    ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
# A capture time later than now plus this is refused (a camera clock gone wrong).
CAPTURED_AT_MAX_FUTURE_SECONDS = env_int("CAPTURED_AT_MAX_FUTURE_SECONDS", 300, minimum=0)
# A case's metadata is refused above this size, measured as its compact UTF-8 JSON encoding.
CASE_METADATA_MAX_BYTES = env_int("CASE_METADATA_MAX_BYTES", 16384, minimum=2)
# How long an Idempotency-Key and its first answer are kept (a beat task deletes older ones).
IDEMPOTENCY_KEY_HOURS = env_int("IDEMPOTENCY_KEY_HOURS", 24, minimum=1)
# The most cases one POST /api/v1/cases/batch/ may hold.
CASE_BATCH_MAX = env_int("CASE_BATCH_MAX", 100, minimum=1)
# The most bytes one batch request may send, refused with a 413 before it is read. By default
# room for a full batch of the largest images as base64 (4 bytes for every 3), each with the
# largest metadata and 1 KiB for its other fields. A JSON batch is held in memory while it is
# read: lower this to bound a web process's memory (a multipart batch streams its files).
CASE_BATCH_MAX_BYTES = env_int(
    "CASE_BATCH_MAX_BYTES",
    CASE_BATCH_MAX * (4 * -(-MAX_IMAGE_BYTES // 3) + CASE_METADATA_MAX_BYTES + 1024),
    minimum=1)
# /readyz: how long each check may wait, and how long the count of workers answering a ping is
# remembered (probes every few seconds would otherwise each ping every worker).
HEALTH_TIMEOUT_SECONDS = env_int("HEALTH_TIMEOUT_SECONDS", 1, minimum=1)
HEALTH_WORKER_CACHE_SECONDS = env_int("HEALTH_WORKER_CACHE_SECONDS", 15, minimum=0)
# Webhooks (docs/api.md): how long one attempt may wait for an answer, how long a delivery is
# retried (backing off from the first wait, doubling up to the longest), how many are sent at
# once, how long a rotated secret still signs, how many endpoints an account may have, and
# whether endpoints may be private or loopback addresses (never in production: that lets a
# client's URL reach the platform's own network).
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 15, minimum=1)
WEBHOOK_RETRY_HOURS = env_int("WEBHOOK_RETRY_HOURS", 24, minimum=1)
WEBHOOK_BACKOFF_FIRST_SECONDS = env_int("WEBHOOK_BACKOFF_FIRST_SECONDS", 5, minimum=1)
WEBHOOK_BACKOFF_MAX_SECONDS = env_int("WEBHOOK_BACKOFF_MAX_SECONDS", 3600, minimum=1)
WEBHOOK_SEND_CONCURRENCY = env_int("WEBHOOK_SEND_CONCURRENCY", 8, minimum=1)
WEBHOOK_SECRET_ROTATION_HOURS = env_int("WEBHOOK_SECRET_ROTATION_HOURS", 24, minimum=0)
WEBHOOK_ENDPOINTS_MAX = env_int("WEBHOOK_ENDPOINTS_MAX", 10, minimum=1)
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env_bool("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", False)
WEBHOOK_DRAIN_SECONDS = env_int("WEBHOOK_DRAIN_SECONDS", 5, minimum=1)
REVIEW_LEASE_SECONDS = env_int("REVIEW_LEASE_SECONDS", 300, minimum=10)
REVIEW_LEASE_CLOSE_GRACE_SECONDS = env_int("REVIEW_LEASE_CLOSE_GRACE_SECONDS", 15, minimum=0)
# The review page's session goal: answers, by default, and how long a session lasts when the
# reviewer does not start a new one from the dashboard.
REVIEW_SESSION_GOAL = env_int("REVIEW_SESSION_GOAL", 50, minimum=1)
REVIEW_SESSION_HOURS = env_int("REVIEW_SESSION_HOURS", 8, minimum=1)
# An answer given on the review page is stored this long after it is given: until then its
# reviewer can take it back (Backspace, "Undo"). Beat stores the due ones every few seconds.
REVIEW_UNDO_SECONDS = env_int("REVIEW_UNDO_SECONDS", 10, minimum=1)
# An audit task waiting longer than this is served before every task that is not urgent: the
# guardrails judge the model by audits, so they must not wait behind the whole backlog.
AUDIT_SERVE_WITHIN_SECONDS = env_int("AUDIT_SERVE_WITHIN_SECONDS", 900, minimum=0)
PREDICTION_STALE_SECONDS = env_int("PREDICTION_STALE_SECONDS", 120, minimum=0)
# A case still waiting before routing after this long raises an alert (and shows on the team
# page); the alert repeats at most this often while cases stay stuck.
CASE_STUCK_ALERT_SECONDS = env_int("CASE_STUCK_ALERT_SECONDS", 600, minimum=60)
CASE_STUCK_ALERT_REPEAT_SECONDS = env_int("CASE_STUCK_ALERT_REPEAT_SECONDS", 3600, minimum=60)
INFERENCE_DEVICE = env_choice("INFERENCE_DEVICE", "cpu", ["cpu", "cuda"])
INFERENCE_CHANNELS_LAST = env_bool("INFERENCE_CHANNELS_LAST", True)
INFERENCE_BATCH_SIZE = env_int("INFERENCE_BATCH_SIZE", 64, minimum=1)
INFERENCE_BATCH_WAIT_MS = env_int("INFERENCE_BATCH_WAIT_MS", 200, minimum=0)
INFERENCE_MAX_ATTEMPTS = env_int("INFERENCE_MAX_ATTEMPTS", 3, minimum=1)
INFERENCE_TIME_LIMIT = env_int("INFERENCE_TIME_LIMIT", 120, minimum=1)
# Requests per API key (per user for a logged-in session), counted on the shared cache.
API_THROTTLE_RATE = env_rate("API_THROTTLE_RATE", "600/min")
LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ["DEBUG", "INFO", "WARNING", "ERROR"])
# Rollout alerts (guardrail pauses, held scheduled changes): email to these addresses (or
# ADMINS) and a JSON POST signed with HMAC-SHA256 of the body under the secret.
ROLLOUT_ALERT_EMAILS = env_list("ROLLOUT_ALERT_EMAILS", [])
ROLLOUT_ALERT_WEBHOOK_URL = env_str("ROLLOUT_ALERT_WEBHOOK_URL", "")
ROLLOUT_ALERT_WEBHOOK_SECRET = env_str("ROLLOUT_ALERT_WEBHOOK_SECRET", "")
ROLLOUT_ALERT_WEBHOOK_TIMEOUT = env_int("ROLLOUT_ALERT_WEBHOOK_TIMEOUT", 5, minimum=1)
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "review-platform@localhost")
if ROLLOUT_ALERT_WEBHOOK_URL and not ROLLOUT_ALERT_WEBHOOK_SECRET:
    raise ImproperlyConfigured("ROLLOUT_ALERT_WEBHOOK_SECRET must be set with "
                               "ROLLOUT_ALERT_WEBHOOK_URL")

if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off "
                                   "(export SECRET_KEY=...)")
    SECRET_KEY = "insecure-development-key"  # noqa: S105 - only reachable with DEBUG on

# Keep connections between requests (checked before reuse) instead of one per request.
DATABASES["default"].update({"CONN_MAX_AGE": DB_CONN_MAX_AGE, "CONN_HEALTH_CHECKS": True})

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "reviewplatform",
    "inference",
    "rollout",
    "webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "reviewplatform.middleware.QueryNulRefused",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# Login lockout (django-axes): after AXES_FAILURE_LIMIT failed logins for one username from one
# address, that pair is refused for AXES_COOLOFF_MINUTES, on /login/ and on the admin's login
# alike, with the page registration/locked_out.html and status 429 (axes' default). A
# successful login clears the count. API keys are not passwords and are not counted.
# `manage.py axes_reset` lifts every lockout.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_MINUTES = env_int("AXES_COOLOFF_MINUTES", 15, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=AXES_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

# Content-Security-Policy (django-csp): scripts and styles only from this site's static files,
# never inline (templates keep their scripts and styles in static/), and no page may be framed.
# The ReDoc page alone widens it for what ReDoc needs (reviewplatform/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    },
}

ROOT_URLCONF = "reviewplatform.urls"
WSGI_APPLICATION = "reviewplatform.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Case images are served only through an authenticated view, never from a public URL.
MEDIA_URL = "/media-not-public/"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "review-home"
LOGOUT_REDIRECT_URL = "login"

# A request's fields, its files apart (a whole JSON body, but for the batch's own limit above).
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_IMAGE_BYTES + 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# Django's default, or one file per case of a full multipart batch.
DATA_UPLOAD_MAX_NUMBER_FILES = max(100, CASE_BATCH_MAX)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "reviewplatform.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "reviewplatform.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "reviewplatform.api_errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["reviewplatform.throttling.ApiKeyRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

# The OpenAPI schema at /api/schema/, Swagger UI at /api/docs/ and ReDoc at /api/redoc/, their
# scripts served from this app's static files (drf-spectacular-sidecar), never from a CDN.
SPECTACULAR_SETTINGS = {
    "OAS_VERSION": "3.1.0",
    "TITLE": "Review platform API",
    "DESCRIPTION": (
        "Submit image cases to a deployment and follow them to their decision (API clients), "
        "and steer a deployment's staged rollout (staff).\n\n"
        "Authenticate with the header `Authorization: Api-Key <key>`. Every 4xx answers one "
        "error envelope, `{\"code\", \"message\", \"fields\"}`: branch on `code`, show "
        "`message`, and read `fields` for the inputs at fault."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request bodies apart from answers: an upload is a binary file in, a URL out.
    "COMPONENT_SPLIT_REQUEST": True,
    # Database ids in paths (reviewplatform.converters): 1 to 18 digits.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 0,
                                        "maximum": 999_999_999_999_999_999}},
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "reviewplatform.openapi.not_acceptable_documented"],
    # No validator badge: Swagger UI would send the schema to validator.swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Declared so that workers, `celery purge` and monitoring know them all: GPU machines run
# `celery worker -Q inference`. Webhooks go out on their own queue, served by a worker of
# threads (`-Q webhooks -P threads`): a slow receiver never holds a worker that predicts.
CELERY_TASK_QUEUES = (Queue("default"), Queue("inference"), Queue("webhooks"))
CELERY_TASK_ROUTES = {"reviewplatform.tasks.predict_case": {"queue": "inference"},
                      "reviewplatform.tasks.predict_waiting": {"queue": "inference"},
                      "reviewplatform.tasks.predict_cases": {"queue": "inference"},
                      "reviewplatform.tasks.reference_detectors_fit": {"queue": "inference"},
                      "reviewplatform.tasks.webhooks_drain": {"queue": "webhooks"}}
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "requeue-stale-cases": {
        "task": "reviewplatform.tasks.cases_requeue_stale",
        "schedule": 60.0,
    },
    "idempotency-keys-expire": {
        "task": "reviewplatform.tasks.idempotency_keys_expire",
        "schedule": 3600.0,
    },
    "webhooks-drain": {
        "task": "reviewplatform.tasks.webhooks_drain",
        "schedule": float(WEBHOOK_DRAIN_SECONDS),
    },
    "case-images-retention": {
        "task": "reviewplatform.tasks.case_images_expire",
        "schedule": 3600.0,
    },
    "reference-sets-fill": {
        "task": "reviewplatform.tasks.reference_sets_fill",
        "schedule": 600.0,
    },
    "reference-detectors-fit": {
        "task": "reviewplatform.tasks.reference_detectors_fit",
        "schedule": 600.0,
    },
    "pending-answers-store": {
        "task": "reviewplatform.tasks.pending_answers_store",
        "schedule": 5.0,
    },
    "stuck-cases": {
        "task": "reviewplatform.tasks.cases_stuck_check",
        "schedule": 60.0,
    },
    "models-failing": {
        "task": "reviewplatform.tasks.models_failing_check",
        "schedule": 60.0,
    },
    # Every minute: the sequential tests stay valid however often they are looked at, and the
    # adaptive audit rates they set should follow the evidence closely.
    "rollout-guardrails": {
        "task": "rollout.tasks.guardrails_run",
        "schedule": 60.0,
    },
    "rollout-scheduled-changes": {
        "task": "rollout.tasks.scheduled_changes_apply",
        "schedule": 60.0,
    },
    # The report reads pre-counted figures; the page corrects them for cases written since
    # the last fold, so folding often keeps that correction small.
    "report-rollup-fold": {
        "task": "rollout.tasks.report_rollup_fold",
        "schedule": 10.0,
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}

# /metrics for Prometheus: scraped with `Authorization: Bearer <METRICS_TOKEN>` when a token is
# set; without one, only a logged-in staff user may read it.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
# How far back the agreement and latency figures of /metrics reach.
METRICS_WINDOW_MINUTES = env_int("METRICS_WINDOW_MINUTES", 15, minimum=1)
METRICS_AGREEMENT_DAYS = env_int("METRICS_AGREEMENT_DAYS", 14, minimum=1)
# How old the guardrail figures that /metrics reports may be: beat's guardrail run refreshes
# them every 5 minutes (each check reads the whole history of a cell).
GUARDRAIL_FIGURES_SECONDS = env_int("GUARDRAIL_FIGURES_SECONDS", 300, minimum=1)

# Shared by the web and worker processes (the guardrail figures): Redis.
CACHES = {
    "default": {
        "BACKEND": "reviewplatform.cache.ReusedClientRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "reviewplatform",
        # A Redis that does not answer costs a request a second at most (reviewplatform.cache).
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    },
    # What the web processes and the workers must see alike (the prediction job's marker):
    # Redis always, even where "default" is a cache of each process's own (the tests).
    "shared": {
        "BACKEND": "reviewplatform.cache.ReusedClientRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "reviewplatform-shared",
    },
}
