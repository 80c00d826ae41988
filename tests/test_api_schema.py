"""The API describes itself: an OpenAPI 3.1 schema at /api/schema/, Swagger UI at /api/docs/
and ReDoc at /api/redoc/, readable without login, their scripts served by the platform itself."""

from __future__ import annotations

import json
import re
from unittest.mock import ANY

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command

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
    # Swagger UI's start-up script comes from the page's own URL (no inline script).
    own = {link for link in linked_urls(page) if link.startswith(f"{url}?")}
    assert set(linked_urls(page)) == set(static) | own
    for link in static:
        path = link.split(settings.STATIC_URL, 1)[1]
        assert finders.find(path), f"{link} is not among the static files"
    assert "/api/schema/" in page or any(
        "/api/schema/" in client.get(link).content.decode() for link in own)
    assert "<script>" not in page and "<style>" not in page


def test_it_generates_a_valid_schema_without_a_warning(tmp_path):
    # --fail-on-warn turns any warning or error of the generator into a CommandError;
    # --validate checks the result against the OpenAPI specification.
    call_command("spectacular", "--validate", "--fail-on-warn",
                 "--file", str(tmp_path / "schema.yaml"))

    assert (tmp_path / "schema.yaml").stat().st_size > 0


def schema_of(client) -> dict:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    return json.loads(response.content)


def operations(schema: dict):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def test_it_documents_every_operation_with_the_api_key_and_the_error_envelope(client):
    schema = schema_of(client)

    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": ANY}
    assert set(schema["components"]["schemas"]["Error"]["required"]) == {
        "code", "message", "fields"}
    for name, operation in operations(schema):
        assert {"ApiKey": []} in operation["security"], name
        assert {"401", "406", "429", "503"} <= set(operation["responses"]), name
        errors = {status: response for status, response in operation["responses"].items()
                  if status.startswith(("4", "5"))}
        for status, response in errors.items():
            assert response["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"}, (name, status)
        successes = [status for status in operation["responses"] if status.startswith("2")]
        assert len(successes) == 1, name
        assert successes == ["204"] or operation["responses"][successes[0]]["content"], name


def test_it_documents_the_submit_as_a_multipart_upload_and_the_list_as_cursor_pages(client):
    schema = schema_of(client)
    cases = schema["paths"]["/api/v1/cases/"]
    components = schema["components"]["schemas"]

    submit = cases["post"]["requestBody"]["content"]
    assert list(submit) == ["multipart/form-data"]
    fields = components["CaseSubmitRequest"]["properties"]
    assert fields["image"]["format"] == "binary"
    assert fields["captured_at"]["format"] == "date-time"
    assert {"201", "400", "401", "403", "409", "429"} <= set(cases["post"]["responses"])
    parameters = {p["name"] for p in cases["get"]["parameters"]}
    assert {"cursor", "page_size", "deployment", "status", "region", "source", "external_id",
            "captured_after", "captured_before", "created_after",
            "created_before"} <= parameters
    page = components[cases["get"]["responses"]["200"]["content"]["application/json"]
                      ["schema"]["$ref"].rsplit("/", 1)[1]]
    assert {"next", "previous", "results"} <= set(page["properties"])
