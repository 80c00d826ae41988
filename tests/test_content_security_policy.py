"""Every page carries a Content-Security-Policy that allows no inline script, and no template
holds one: scripts and styles are static files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

TEMPLATES = Path(settings.BASE_DIR) / "templates"

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>",
                           re.IGNORECASE)
EVENT_HANDLER = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
INLINE_STYLE = re.compile(r"<style|\sstyle\s*=", re.IGNORECASE)


def policy_of(response) -> dict[str, list[str]]:
    header = response.headers["Content-Security-Policy"]
    directives = [part.split() for part in header.split(";") if part.strip()]
    return {name: values for name, *values in directives}


def templates() -> list[Path]:
    return sorted(TEMPLATES.rglob("*.html"))


@pytest.mark.parametrize("path", templates(), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_no_template_holds_an_inline_script_handler_or_style(path):
    text = path.read_text()

    assert not INLINE_SCRIPT.search(text)
    assert not EVENT_HANDLER.search(text)
    assert not INLINE_STYLE.search(text)


def test_the_template_check_finds_what_it_looks_for():
    assert INLINE_SCRIPT.search('<p><script>alert(1)</script>')
    assert not INLINE_SCRIPT.search('<script src="/static/x.js"></script>')
    assert not INLINE_SCRIPT.search('<script id="d" type="application/json">{}</script>')
    assert EVENT_HANDLER.search('<button onclick="go()">')
    assert INLINE_STYLE.search('<div style="color: red">')


@pytest.mark.parametrize("url", ["/login/", "/", "/api/docs/", "/admin/login/"])
def test_it_sends_a_policy_without_inline_script(client, admin_user, url):
    client.force_login(admin_user)

    policy = policy_of(client.get(url))

    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]


def test_the_redoc_page_alone_allows_inline_styles_and_its_search_worker(client):
    policy = policy_of(client.get("/api/redoc/"))

    assert policy["script-src"] == ["'self'"]
    assert set(policy["style-src"]) == {"'self'", "'unsafe-inline'"}
    assert set(policy["worker-src"]) == {"'self'", "blob:"}


def test_the_swagger_page_loads_its_start_up_script_from_its_own_url(client):
    page = client.get("/api/docs/").content.decode()
    script = re.search(r'<script src="(/api/docs/\?[^"]*)"', page)

    assert script is not None
    response = client.get(script.group(1).replace("&amp;", "&"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in response.content.decode()


def test_every_page_names_its_icon_a_static_file_of_its_own(client, admin_user):
    from django.contrib.staticfiles import finders

    client.force_login(admin_user)
    html = client.get("/").content.decode()

    link = re.search(r'<link rel="icon" type="image/svg\+xml" href="([^"]+)">', html)
    assert link is not None and link.group(1).startswith(settings.STATIC_URL)
    found = finders.find(link.group(1).removeprefix(settings.STATIC_URL).split("?")[0])
    assert found is not None and Path(found).read_text().startswith("<svg")
