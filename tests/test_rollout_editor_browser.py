"""An admin builds a limited scope with the rollout page's form in Chromium, previews it on
recent cases, publishes it, pauses one cell and rolls back with an override reason."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image
from playwright.sync_api import expect
from sklearn.datasets import load_digits

from rollout.selectors import policy_current
from tests.conftest import browser_login, other_connections_wait_closed
from tests.reports_factory import decide, sim_model

pytestmark = pytest.mark.e2e
TOUR = Path(__file__).resolve().parent.parent / "test-artifacts" / "tour"
RULE = "north-0800-1800-50pct"


@pytest.fixture
def leftover_connections_closed(transactional_db):
    yield
    other_connections_wait_closed()


def digit_png(index: int) -> bytes:
    """One of scikit-learn's handwritten digits as a 32 x 32 PNG."""
    pixels = load_digits().images[index]
    image = Image.new("L", (8, 8))
    image.putdata([int(255 - v * 255 / 16) for v in pixels.flatten()])
    buffer = io.BytesIO()
    image.resize((32, 32), Image.Resampling.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def recent_cases(deployment, client_user, reviewer, settings, tmp_path):
    """Reviewed recent cases with real digit images: 12 from the north at noon, 4 from the
    east; the model answered each with the digit shown."""
    settings.MEDIA_ROOT = tmp_path / "media"
    model = sim_model(deployment)
    digits = load_digits()
    cases = []
    for n in range(16):
        region, zone = ("north", "Europe/Oslo") if n < 12 else ("east", "Asia/Tokyo")
        name = default_storage.save(f"cases/digit-{n}.png", ContentFile(digit_png(n)))
        label = str(digits.target[n])
        cases.append(decide(deployment, model, submitted_by=client_user, reviewer=reviewer,
                            captured_at=datetime(2026, 5, 4, 12, tzinfo=ZoneInfo(zone)),
                            region=region, model_label=label, confidence=0.98,
                            human=label if n != 3 else "cannot_tell", image=name))
    return cases


def fill_rule(page) -> None:
    """The first rule: the north, 08:00-18:00 local time, 50% of the cases."""
    page.select_option("select[name=stage]", "limited")
    rule = page.locator("fieldset.rule").first
    rule.locator("input[name$='-regions'][value=north]").check()
    rule.locator("button.window-add").click()
    rule.locator("input[name$='-start']").fill("08:00")
    rule.locator("input[name$='-end']").fill("18:00")
    rule.locator("input[name$='-percent']").fill("50")


@pytest.mark.django_db(transaction=True)
def test_an_admin_builds_previews_publishes_pauses_and_rolls_back_a_scope(
        live_server, leftover_connections_closed, browser, admin_user, recent_cases):
    TOUR.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []  # script errors (the refusals below are 400 pages, expected)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and not (
        "favicon.ico" in m.location["url"] or "status of 400" in m.text) else None)
    browser_login(page, live_server.url, "admin")
    page.goto(f"{live_server.url}/deployments/digits/rollout/")

    # Build the scope with the form; the summary, the diff and the JSON follow as it is edited.
    assert page.locator("fieldset.rule").count() == 1  # one empty rule to start from
    fill_rule(page)
    expect(page.locator("#live-lines")).to_contain_text("50% of them")
    lines = page.inner_text("#live-lines")
    assert ("The model decides cases from region north captured 08:00-18:00 local time, 50% "
            f"of them, when its confidence is at least 0.90 (rule {RULE}).") in lines
    assert "stage: shadow → limited" in page.inner_text("#live-diff")
    assert page.get_attribute("fieldset.rule input[name$='-name']", "placeholder") == RULE
    assert '"percent": 50' in page.input_value("#rules-json")
    assert "The model starts deciding cases from region north" in page.inner_text("#changes")
    # The whole page: a screenshot of the tall editor alone leaves Chromium's layout stale for
    # the next click.
    page.screenshot(path=str(TOUR / "rollout-editor.png"), full_page=True)

    # Preview on recent cases: how many the rule takes, their thumbnails, the agreement.
    page.click("#preview-button")
    page.wait_for_selector("#preview-count")
    sample = page.locator("#preview ul.sample img")
    matched = int(page.inner_text("#preview-count").split()[0])
    assert 0 < matched <= 12  # half of the north's cases, give or take the sticky buckets
    assert sample.count() == min(matched, 8)
    # Every thumbnail loaded (they load in parallel: the last is not always the last done).
    page.wait_for_function("() => [...document.querySelectorAll('#preview ul.sample img')]"
                           ".every(i => i.complete)")
    assert sample.evaluate_all("images => images.map(i => i.naturalWidth)") == [32] * min(
        matched, 8)
    assert "of the last 16 cases (14 days)" in page.inner_text("#preview-count")
    page.locator("#preview").scroll_into_view_if_needed()
    page.locator("#scope-editor").screenshot(path=str(TOUR / "rollout-preview.png"))

    # Publish with a reason: the evidence is too thin, so the refusal beside the button asks
    # for an override reason; with one, it is published.
    page.fill("input[name=reason]", "pilot in the north by day")
    page.check("#publish-confirm")
    page.click("#publish")
    page.wait_for_selector("#error")
    assert "override reason" in page.inner_text("#error")
    assert page.locator("#scope-editor #error").count() == 1
    deployment_id = recent_cases[0].deployment_id
    assert policy_current(deployment_id=deployment_id).version == 1
    page.fill("#scope-editor input[name=override_reason]", "signed off by the team")
    page.check("#publish-confirm")
    page.click("#publish")
    page.wait_for_selector(".messages")
    assert "Published version 2" in page.inner_text(".messages")
    published = policy_current(deployment_id=deployment_id)
    assert (published.version, published.stage, published.override_reason) == (
        2, "limited", "signed off by the team")
    assert published.rules == [{"name": RULE, "regions": ["north"], "percent": 50,
                                "windows": [{"start": "08:00", "end": "18:00"}]}]

    # Pause the one cell from the guardrail table.
    row = page.locator(f"tr[data-cell='{RULE}/north']")
    row.locator("summary").click()
    row.locator("input[name=reason]").fill("a fogged camera in the north")
    assert "Region north under rule" in row.inner_text()
    row.locator("input[name=confirm]").check()
    row.locator("button[type=submit]").click()
    page.wait_for_selector(".messages")
    row = page.locator(f"tr[data-cell='{RULE}/north']")
    assert row.locator(".state").inner_text() == "paused"
    paused = policy_current(deployment_id=deployment_id)
    assert (paused.version, paused.kind, paused.paused_cells) == (3, "pause", [[RULE, "north"]])
    page.locator("#guardrails").screenshot(path=str(TOUR / "rollout-guardrails.png"))

    # Roll back to version 2: it lifts the pause, a widening the thin evidence does not carry,
    # so the gate's reason and the override field show in that row.
    def rollback_form():
        return page.locator("form.rollback-form:has(input[name=version][value='2'])")

    page.locator("tr:has(form.rollback-form input[name=version][value='2']) summary").click()
    rollback_form().locator("input[name=reason]").fill("the camera is clean again")
    rollback_form().locator("input[name=confirm]").check()
    rollback_form().locator("button[type=submit]").click()
    page.wait_for_selector("form.rollback-form #error")
    assert "evidence gate did not pass" in rollback_form().locator("#error").inner_text()
    assert policy_current(deployment_id=deployment_id).version == 3
    rollback_form().locator("input[name=reason]").fill("the camera is clean again")
    rollback_form().locator("input[name=override_reason]").fill("checked 40 cases by hand")
    rollback_form().locator("input[name=confirm]").check()
    rollback_form().locator("button[type=submit]").click()
    page.wait_for_selector(".messages")
    back = policy_current(deployment_id=deployment_id)
    assert (back.version, back.kind, back.copied_from, back.paused_cells,
            back.override_reason) == (4, "rollback", 2, [], "checked 40 cases by hand")
    assert errors == []
    page.close()
