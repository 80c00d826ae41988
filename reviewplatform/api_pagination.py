"""Cursor pagination of the API's lists: a bad `page_size` or cursor is a 400 naming it,
never silently replaced, and never a 500."""

from __future__ import annotations

import re
from base64 import b64decode
from urllib import parse

from django.core.signing import BadSignature, Signer
from rest_framework import exceptions
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.utils.urls import replace_query_param

BAD_CURSOR = ("this cursor was not given out by the API: follow the next and previous links "
              "as they are")


class CheckedCursorPagination(CursorPagination):
    """`?cursor=` from the `next`/`previous` links, `?page_size=` from 1 to `max_page_size`.

    DRF's cursor is base64 of the position of the page's edge ("p=1"): one made up by hand
    would reach the database's comparison as it is (a 500 where it is no date-time, a page
    of another's making where it is). Each cursor is signed when given out, and one whose
    signature does not hold is refused."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    signer = Signer(salt="reviewplatform.api_pagination.cursor")

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        # ASCII digits only: str.isdigit() takes "²", which int() refuses.
        digits = re.fullmatch(r"[0-9]{1,9}", raw.strip())
        size = int(digits[0]) if digits else 0
        if not 1 <= size <= self.max_page_size:
            raise exceptions.ValidationError({self.page_size_query_param: [
                f"page_size must be a whole number from 1 to {self.max_page_size}"]})
        return size

    def encode_cursor(self, cursor: Cursor) -> str:
        url = super().encode_cursor(cursor)
        encoded = parse.parse_qs(parse.urlsplit(url).query)[self.cursor_query_param][0]
        return replace_query_param(url, self.cursor_query_param, self.signer.sign(encoded))

    def decode_cursor(self, request: Request) -> Cursor | None:
        signed = request.query_params.get(self.cursor_query_param)
        if signed is None:
            return None
        try:
            # Signed by encode_cursor: what it holds is DRF's own cursor, as DRF wrote it.
            querystring = b64decode(self.signer.unsign(signed).encode("ascii")).decode("ascii")
            tokens = parse.parse_qs(querystring, keep_blank_values=True)
            return Cursor(offset=int(tokens.get("o", ["0"])[0]),
                          reverse=bool(int(tokens.get("r", ["0"])[0])),
                          # A str, as DRF's own decode_cursor passes it (the stubs say int).
                          position=tokens.get("p", [None])[0])  # type: ignore[arg-type]
        except (BadSignature, TypeError, ValueError):
            raise exceptions.ValidationError({self.cursor_query_param: [BAD_CURSOR]}) from None
