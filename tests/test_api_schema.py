"""The API describes itself: an OpenAPI 3.1 schema at /api/schema/, Swagger UI at /api/docs/
and ReDoc at /api/redoc/, readable without login, their scripts served by the platform itself."""

from __future__ import annotations

import json
import re

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders

# src="..." and href="..." of a page.
LINKED = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


def linked_urls(page: str) -> list[str]:
    return LINKED.findall(page)


def test_it_serves_the_openapi_31_schema_without_login(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"] == "3.1.0"
    assert schema["info"]["title"] == settings.SPECTACULAR_SETTINGS["TITLE"]
    assert "/api/v1/cases/" in schema["paths"]


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_it_serves_the_docs_pages_from_local_static_files_only(client, url):
    response = client.get(url)

    assert response.status_code == 200
    page = response.content.decode()
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", page, re.IGNORECASE), (
        "the page points to another site")
    static = [link for link in linked_urls(page) if link.startswith(settings.STATIC_URL)
              or link.startswith("/" + settings.STATIC_URL)]
    assert static, "the page loads no script of its own"
    assert set(linked_urls(page)) == set(static)
    for link in static:
        path = link.split(settings.STATIC_URL, 1)[1]
        assert finders.find(path), f"{link} is not among the static files"
    assert "/api/schema/" in page
