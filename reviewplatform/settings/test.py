"""Test overlay: the same settings, with fast password hashing and a throwaway media folder."""

import tempfile
from pathlib import Path

from .base import *  # noqa: F403
from .base import env

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=tempfile.mkdtemp(prefix="reviewplatform-media-")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
