"""Test overlay: the same settings, with fast password hashing and a throwaway media folder."""

import tempfile
from pathlib import Path

from .base import *  # noqa: F403
from .envvars import env_str

# Tests create and drop databases that live-server threads and workers also connect to.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", "") or tempfile.mkdtemp(prefix="reviewplatform-media-"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Each test process keeps its own default cache (cleared before every test); the "shared"
# cache stays on Redis, as the workers the end-to-end tests start must see it.
CACHES = {**CACHES, "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}  # noqa: F405

# Webhook receivers in the tests listen on 127.0.0.1 (the demo allows it too); a test turns
# this off to check that private addresses are refused.
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
