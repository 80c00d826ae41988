"""NUL characters (U+0000) in input: PostgreSQL stores none in text or jsonb, so input holding
one is refused where it arrives, with a 400 naming it, rather than failing at the INSERT."""

from __future__ import annotations

from typing import Any

from .errors import ServiceError

NUL = "\x00"
NUL_REFUSED = "text may not contain NUL characters (\\u0000)"


def nul_where(value: Any, at: str = "") -> str | None:
    """Where the first NUL in a JSON value is, as the API names a field ("rules[0].name"; ""
    for `value` itself), or None when it holds none. A NUL in a key is placed at the object
    holding that key."""
    if isinstance(value, str):
        return at if NUL in value else None
    if isinstance(value, dict):
        for key, inner in value.items():
            if NUL in str(key):
                return at
            found = nul_where(inner, f"{at}.{key}" if at else str(key))
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, inner in enumerate(value):
            found = nul_where(inner, f"{at}[{index}]")
            if found is not None:
                return found
    return None


def nul_refuse(text: str, *, field: str) -> str:
    """`text` as it is, or a ServiceError naming `field` when it holds a NUL."""
    if NUL in text:
        raise ServiceError(f"{field} may not contain NUL characters (\\u0000)", field=field)
    return text
