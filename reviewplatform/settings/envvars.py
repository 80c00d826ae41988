"""Typed readers of environment variables: a wrong value stops start-up with a message that
names the variable and what it expected."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    return os.environ.get(name)


def env_str(name: str, default: str) -> str:
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false (1/0, yes/no, on/off), "
                               f"got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        result = default
    else:
        try:
            result = int(value.strip())
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be a whole number, got {value!r}") from None
    if minimum is not None and result < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {result}")
    return result


def env_list(name: str, default: Iterable[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: Iterable[str]) -> str:
    allowed = list(choices)
    value = env_str(name, default)
    if value not in allowed:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


_RATE = re.compile(r"(\d+)/(s|sec|second|m|min|minute|h|hour|d|day)")


def env_rate(name: str, default: str) -> str:
    """A request rate such as `600/min`: a whole number of at least 1 per second, minute, hour
    or day (as Django REST framework's throttles read it)."""
    value = env_str(name, default)
    match = _RATE.fullmatch(value.strip().replace(" ", ""))
    if match is None or int(match.group(1)) < 1:
        raise ImproperlyConfigured(f"{name} must be a rate such as 600/min (a whole number of "
                                   f"at least 1 per s, min, hour or day), got {value!r}")
    return f"{int(match.group(1))}/{match.group(2)}"

def env_list_of(name: str, default: Iterable[str], choices: Iterable[str]) -> list[str]:
    """A comma-separated list, each item one of `choices` (compared in upper case); never
    empty."""
    allowed = [choice.upper() for choice in choices]
    items = [item.upper() for item in env_list(name, default)]
    wrong = [item for item in items if item not in allowed]
    if wrong or not items:
        raise ImproperlyConfigured(f"{name} must be a comma-separated list of "
                                   f"{', '.join(allowed)}, got {_raw(name)!r}")
    return items


def env_fernet_keys(name: str) -> list[str]:
    """A comma-separated list of Fernet keys (32 bytes, URL-safe base64, as
    `cryptography.fernet.Fernet.generate_key()` makes them); unset, none."""
    from cryptography.fernet import Fernet

    keys = env_list(name, [])
    for number, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: key {number} is not a Fernet key (32 bytes, URL-safe base64; make one "
                f"with: python -c 'from cryptography.fernet import Fernet; "
                f"print(Fernet.generate_key().decode())')") from None
    return keys


def env_db_url(name: str, default: str) -> dict[str, Any]:
    """A PostgreSQL URL: the platform's queue, reports and exports are PostgreSQL statements."""
    value = env_str(name, default)
    try:
        config = environ.Env.db_url_config(value)
    except (environ.ImproperlyConfigured, ValueError, KeyError) as exc:
        raise ImproperlyConfigured(f"{name} is not a database URL ({exc}): {value!r}") from exc
    if config.get("ENGINE") != "django.db.backends.postgresql":
        raise ImproperlyConfigured(f"{name} must be a PostgreSQL URL (postgres://...), "
                                   f"got {value!r}")
    return config


def env_url(name: str, default: str, *, schemes: Iterable[str]) -> str:
    allowed = tuple(schemes)
    value = env_str(name, default)
    if not value.startswith(tuple(f"{scheme}://" for scheme in allowed)):
        raise ImproperlyConfigured(f"{name} must be a {' or '.join(allowed)} URL, got {value!r}")
    return value
