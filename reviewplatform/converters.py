"""The URL converter for database ids, registered as `id` (`<id:case_id>`).

Django's `int` takes any run of digits; one past the bigint range would reach the database
and fail there. An id here is 1 to 18 ASCII digits, always within bigint: a longer one is no
id of the platform, a 404 before any view runs."""

from __future__ import annotations

import re

ID_REGEX = "[0-9]{1,18}"


class IdConverter:
    regex = ID_REGEX

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


def id_parse(text: str) -> int | None:
    """`text` as a database id (as in a URL), or None when it is not one."""
    return int(text) if re.fullmatch(ID_REGEX, text) else None
