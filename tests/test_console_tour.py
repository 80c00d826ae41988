"""The console in Chromium, as an admin walks it: the disagreements gallery, a case page opened
from it, the alerts page and the report; a screenshot of each for the README's tour
(`test-artifacts/tour/`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sklearn.datasets import load_digits

from inference.demo_model import digit_image
from rollout.alerts import admins_alert
from tests.conftest import CAPTURED_AT, browser_login, other_connections_wait_closed
from tests.reports_factory import decide, sim_model
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures

pytestmark = pytest.mark.e2e
TOUR = Path(__file__).resolve().parent.parent / "test-artifacts" / "tour"


@pytest.fixture
def leftover_connections_closed(transactional_db):
    yield
    other_connections_wait_closed()


@pytest.mark.django_db(transaction=True)
def test_an_admin_opens_a_case_page_from_the_gallery_and_reads_alerts(
        live_server, leftover_connections_closed, browser, deployment, admin_user,
        client_user, reviewer, media_root):
    digits = load_digits()
    model = sim_model(deployment, "champion")
    cases = []
    for i in range(6):
        (media_root / "cases").mkdir(parents=True, exist_ok=True)
        digit_image(digits.data[i]).save(media_root / "cases" / f"tour-{i}.png")
        truth = str(digits.target[i])
        # Every other case the model got wrong: the gallery shows those.
        said = truth if i % 2 else str((digits.target[i] + 1) % 10)
        cases.append(decide(deployment, model, submitted_by=client_user, reviewer=reviewer,
                            captured_at=CAPTURED_AT, model_label=said, human=truth,
                            image=f"cases/tour-{i}.png"))
    admins_alert(subject=f"{deployment.slug}: guardrail paused automation",
                 body="Guardrail paused automation (floor 0.85): rule day in north: 41 of 60 "
                      "agreed (0.683), evidence 1021",
                 payload={"event": "guardrail_pause", "deployment": deployment.slug})
    TOUR.mkdir(parents=True, exist_ok=True)

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    browser_login(page, live_server.url, "admin")
    page.goto(f"{live_server.url}/deployments/{deployment.slug}/report/disagreements/")
    wrong = cases[0]
    link = page.locator(f'a[href="/cases/{wrong.pk}/"]').last
    assert link.inner_text() == f"case {wrong.pk}"
    page.screenshot(path=str(TOUR / "disagreements.png"), full_page=True)

    link.click()
    page.wait_for_url(re.compile(rf".*/cases/{wrong.pk}/$"))
    decision = page.inner_text("#decision")
    assert decision.startswith(f"Decision: {digits.target[0]} by the reviewers")
    # The capture time in the case's own zone, UTC on hover.
    captured = page.locator("#captured time")
    assert captured.inner_text() == "2026-05-01 21:30 CEST"
    assert captured.get_attribute("title") == "2026-05-01 19:30:00 UTC"
    assert page.evaluate("document.getElementById('case-image').naturalWidth") == 32
    page.screenshot(path=str(TOUR / "case-page.png"), full_page=True)

    page.click("header >> text=Alerts")
    page.wait_for_url(re.compile(r".*/alerts/$"))
    assert "41 of 60 agreed (0.683)" in page.inner_text("#alerts")
    page.screenshot(path=str(TOUR / "alerts.png"), full_page=True)

    page.goto(f"{live_server.url}/deployments/{deployment.slug}/report/")
    assert page.inner_text("#n-cases") == "6"
    page.screenshot(path=str(TOUR / "report.png"), full_page=True)
