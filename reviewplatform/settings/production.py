"""Production overlay: the base settings served over HTTPS only, with nothing taken from the demo.

DJANGO_SETTINGS_MODULE=reviewplatform.settings.production. `manage.py check --deploy` passes
with it. It refuses to start with DEBUG on, with a SECRET_KEY shorter than 50 characters, or
without DATABASE_URL, REDIS_URL and ALLOWED_HOSTS in the environment (the base defaults point
at the demo's local services). Behind a reverse proxy that ends TLS, set
SECURE_PROXY_SSL_HEADER to the header the proxy sets on HTTPS requests, e.g.
`X-Forwarded-Proto: https`, and make sure the proxy overwrites that header from clients.
"""

import os

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import DEBUG, SECRET_KEY
from .envvars import env_bool, env_int, env_str

if DEBUG:
    raise ImproperlyConfigured("DEBUG must be off with reviewplatform.settings.production")
if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
    raise ImproperlyConfigured("SECRET_KEY must be at least 50 random characters in production "
                               "(python -c 'import secrets; print(secrets.token_urlsafe(50))')")
for _name in ("DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS"):
    if not os.environ.get(_name):
        raise ImproperlyConfigured(f"{_name} must be set in production (the default is the "
                                   "demo's)")


def _proxy_ssl_header(name: str) -> tuple[str, str] | None:
    """`Header-Name: value` as Django's (META key, value) pair; empty: no proxy."""
    value = env_str(name, "").strip()
    if not value:
        return None
    header, sep, expected = value.partition(":")
    if not sep or not header.strip() or not expected.strip():
        raise ImproperlyConfigured(f"{name} must read `Header-Name: value`, e.g. "
                                   f"`X-Forwarded-Proto: https`, got {value!r}")
    return ("HTTP_" + header.strip().upper().replace("-", "_"), expected.strip())


SECURE_PROXY_SSL_HEADER = _proxy_ssl_header("SECURE_PROXY_SSL_HEADER")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
# Asking browsers to preload HSTS binds the whole domain and its subdomains for months and
# anyone may submit a domain that asks: the domain's owner opts in, and the check that
# recommends it is silenced.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = ["security.W021"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
