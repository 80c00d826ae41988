"""Settings for every environment, read once from environment variables.

Every value has a default that is safe for a one-machine demo (SQLite, a local Redis, DEBUG off),
except SECRET_KEY, which must be set whenever DEBUG is off. A value that does not parse stops
start-up with a message naming the variable.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
if env_file := env.str("ENV_FILE", default=""):
    environ.Env.read_env(env_file, overwrite=False)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ImproperlyConfigured(message)


try:
    DEBUG = env.bool("DEBUG", default=False)
    SECRET_KEY = env.str("SECRET_KEY", default="")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
    CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
    DATABASES = {
        "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
    }
    DB_CONN_MAX_AGE = env.int("DB_CONN_MAX_AGE", default=60)
    REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6390/0")
    MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
    STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
    TIME_ZONE = env.str("TIME_ZONE", default="UTC")
    CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
    MAX_IMAGE_BYTES = env.int("MAX_IMAGE_BYTES", default=10 * 1024 * 1024)
    MAX_IMAGE_PIXELS = env.int("MAX_IMAGE_PIXELS", default=40_000_000)
    MIN_IMAGE_SIDE = env.int("MIN_IMAGE_SIDE", default=8)
    REVIEW_LEASE_SECONDS = env.int("REVIEW_LEASE_SECONDS", default=300)
    PREDICTION_STALE_SECONDS = env.int("PREDICTION_STALE_SECONDS", default=120)
    INFERENCE_DEVICE = env.str("INFERENCE_DEVICE", default="cpu")
except (environ.ImproperlyConfigured, ValueError) as exc:
    raise ImproperlyConfigured(f"invalid configuration: {exc}") from exc

if not SECRET_KEY:
    _require(DEBUG, "SECRET_KEY must be set when DEBUG is off (export SECRET_KEY=...)")
    SECRET_KEY = "insecure-development-key"  # noqa: S105 - only reachable with DEBUG on
_require(REDIS_URL.startswith(("redis://", "rediss://", "unix://")),
         f"REDIS_URL must be a redis:// URL, got {REDIS_URL!r}")
_require(INFERENCE_DEVICE in {"cpu", "cuda"}, "INFERENCE_DEVICE must be 'cpu' or 'cuda'")
_require(MAX_IMAGE_BYTES > 0 and MAX_IMAGE_PIXELS > 0, "image limits must be positive")
_require(REVIEW_LEASE_SECONDS >= 10, "REVIEW_LEASE_SECONDS must be at least 10")

# Keep connections between requests (checked before reuse) instead of one per request.
DATABASES["default"].update({"CONN_MAX_AGE": DB_CONN_MAX_AGE, "CONN_HEALTH_CHECKS": True})
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Workers and the web server write to one file: wait for the lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE",
         "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "reviewplatform",
    "inference",
    "rollout",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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

DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_IMAGE_BYTES + 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "reviewplatform.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "reviewplatform.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Declared so that workers, `celery purge` and monitoring know both: GPU machines run
# `celery worker -Q inference`.
CELERY_TASK_QUEUES = (Queue("default"), Queue("inference"))
CELERY_TASK_ROUTES = {"inference.tasks.*": {"queue": "inference"}}
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "requeue-stale-cases": {
        "task": "inference.tasks.cases_requeue_stale",
        "schedule": 60.0,
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
