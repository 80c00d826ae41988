"""The review page's view controls in Chromium: brightness and contrast for dark captures, and
answer buttons that stay in view in a narrow or zoomed-in window."""

from __future__ import annotations

import re

import pytest

from tests.conftest import other_connections_wait_closed
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures

pytestmark = pytest.mark.e2e


@pytest.fixture
def leftover_connections_closed(transactional_db):
    yield
    other_connections_wait_closed()


def _open_review(page, url: str) -> None:
    page.goto(f"{url}/")
    page.fill("#id_username", "reviewer")
    page.fill("#id_password", "reviewer-password")
    page.press("#id_password", "Enter")
    page.wait_for_selector("#start")
    page.click("#start")
    page.wait_for_url(re.compile(r".*/review/tasks/\d+/$"))


@pytest.mark.django_db(transaction=True)
def test_brightness_and_contrast_change_the_image_only_and_z_resets_the_view(
        live_server, leftover_connections_closed, browser, enqueue, reviewer):
    enqueue()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    _open_review(page, live_server.url)

    for _ in range(3):
        page.keyboard.press("]")
    page.keyboard.press("}")
    page.keyboard.press("+")

    assert page.inner_text("#brightness-level") == "175%"
    assert page.inner_text("#contrast-level") == "125%"
    assert page.eval_on_selector("#case-image", "e => e.style.filter") == (
        "brightness(1.75) contrast(1.25)")
    page.keyboard.press("z")
    assert page.eval_on_selector("#case-image", "e => e.style.filter") == (
        "brightness(1) contrast(1)")
    assert page.inner_text("#zoom-level") == "100%"
    assert "/review/tasks/" in page.url  # none of these keys answered the case


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("viewport", [
    {"width": 569, "height": 320},   # a 1280 x 720 screen at 225% zoom
    {"width": 390, "height": 700},   # a phone
    {"width": 1280, "height": 900},
])
def test_every_answer_button_is_in_view_at_any_window_size(
        live_server, leftover_connections_closed, browser, enqueue, reviewer, viewport):
    enqueue()
    page = browser.new_page(viewport=viewport)
    _open_review(page, live_server.url)
    page.keyboard.press("+")  # zoomed into the image

    boxes = page.eval_on_selector_all(
        "#answers button", "buttons => buttons.map(b => b.getBoundingClientRect().toJSON())")

    assert len(boxes) == 10  # the digits
    for box in boxes:
        assert box["top"] >= 0 and box["bottom"] <= viewport["height"], (viewport, box)
        assert box["left"] >= 0 and box["right"] <= viewport["width"], (viewport, box)
    with page.expect_navigation():
        page.click("#answers button[value='4']")
