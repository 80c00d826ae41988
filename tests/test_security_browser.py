"""The main pages work in Chromium under the Content-Security-Policy: not one violation."""

from __future__ import annotations

import pytest

from tests.conftest import other_connections_wait_closed
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures

pytestmark = pytest.mark.e2e

# Records every violation the browser reports, before any of the page's own scripts run.
VIOLATIONS_RECORDED = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__violations.push(event.violatedDirective + " " + (event.blockedURI || "inline"));
});
"""


# ReDoc shows Redocly's logo from Redocly's site; the policy refuses it (the docs load nothing
# from another site) and ReDoc then leaves the logo out.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture
def leftover_connections_closed(transactional_db):
    yield
    other_connections_wait_closed()


class Watched:
    """A page whose CSP violations are collected from the console and from the document."""

    def __init__(self, page) -> None:
        self.page = page
        self.console: list[str] = []
        page.add_init_script(VIOLATIONS_RECORDED)
        page.on("console", lambda message: self.console.append(message.text)
                if "Content Security Policy" in message.text else None)

    def violations(self) -> list[str]:
        return self.console + self.page.evaluate("window.__violations || []")

    def visit(self, url: str, ready: str) -> list[str]:
        self.console.clear()
        self.page.goto(url)
        self.page.wait_for_selector(ready)
        self.page.wait_for_load_state("networkidle")
        return self.violations()


@pytest.mark.django_db(transaction=True)
def test_the_main_pages_run_without_a_csp_violation(
        live_server, leftover_connections_closed, browser, enqueue, admin_user, deployment):
    task = enqueue(says="3")
    watched = Watched(browser.new_page(viewport={"width": 1280, "height": 900}))
    base = live_server.url

    assert watched.visit(f"{base}/login/", "#id_username") == []
    watched.page.fill("#id_username", "admin")
    watched.page.fill("#id_password", "admin-password")
    watched.page.click("button[type=submit]")
    watched.page.wait_for_selector("#start")

    pages = [
        (f"{base}/", "#start"),
        (f"{base}/review/tasks/{task.pk}/", "#case-image"),
        (f"{base}/deployments/{deployment.slug}/rollout/", "#timeline"),
        (f"{base}/deployments/{deployment.slug}/report/", "#headline"),
        (f"{base}/deployments/{deployment.slug}/report/disagreements/", "h1"),
        (f"{base}/deployments/{deployment.slug}/models/", "h1"),
        (f"{base}/review/team/", "h1"),
        (f"{base}/admin/", "#content"),
        (f"{base}/admin/rollout/policyversion/", "#result_list"),
        (f"{base}/api/docs/", ".swagger-ui .info"),
    ]
    for url, ready in pages:
        assert watched.visit(url, ready) == [], url
    redoc = watched.visit(f"{base}/api/redoc/", ".api-content h1")
    assert [violation for violation in redoc if REDOC_LOGO not in violation] == []

    # The review page's script (a static file) runs: it zooms.
    watched.visit(f"{base}/review/tasks/{task.pk}/", "#case-image")
    watched.page.keyboard.press("+")
    assert watched.page.inner_text("#zoom-level") == "150%"


@pytest.mark.django_db(transaction=True)
def test_an_inline_script_is_refused_and_reported(
        live_server, leftover_connections_closed, browser, admin_user):
    watched = Watched(browser.new_page())
    watched.visit(f"{live_server.url}/login/", "#id_username")

    # An injected inline event handler, as a stored XSS would write it.
    watched.page.evaluate("""document.body.insertAdjacentHTML(
        "beforeend", '<img src="data:," onerror="window.__ran = 1" id="injected">')""")
    watched.page.wait_for_timeout(300)

    assert watched.page.evaluate("window.__ran") is None
    assert any("script-src" in violation for violation in watched.violations())
