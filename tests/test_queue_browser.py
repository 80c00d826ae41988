"""A reviewer works the queue in Chromium with the keyboard alone."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from reviewplatform.models import Decision, Review, ReviewTask
from tests.conftest import other_connections_wait_closed, pending_answers_stored
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture
def leftover_connections_closed(transactional_db):
    yield
    other_connections_wait_closed()


def wait_for(condition, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.django_db(transaction=True)
def test_it_lets_a_reviewer_decide_five_cases_with_the_keyboard_alone(
        live_server, leftover_connections_closed, browser, enqueue, reviewer, settings):
    settings.REVIEW_LEASE_SECONDS = 12  # renewed every 3 seconds by the page
    settings.REVIEW_LEASE_CLOSE_GRACE_SECONDS = 2
    tasks = [enqueue(region=region) for region in ["north", "east", "west", "north", "east",
                                                   "west"]]
    answers = {tasks[0].case_id: "7", tasks[1].case_id: "0", tasks[2].case_id: "9",
               tasks[3].case_id: "cannot_tell", tasks[4].case_id: "3"}
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    prefetched: list[str] = []
    page.on("request", lambda request: prefetched.append(request.url)
            if "/image/" in request.url else None)

    # Log in and start, without the mouse.
    page.goto(f"{live_server.url}/")
    page.wait_for_selector("#id_username")
    page.keyboard.type("reviewer")
    page.keyboard.press("Tab")
    page.keyboard.type("reviewer-password")
    page.keyboard.press("Enter")
    page.wait_for_selector("#start")
    page.keyboard.press("Enter")

    seen: list[int] = []
    for n in range(5):
        page.wait_for_url(re.compile(r".*/review/tasks/\d+/$"))
        case_id = int(page.inner_text("h1").split()[-1])
        assert case_id not in seen
        seen.append(case_id)
        if n == 0:
            ARTIFACTS.mkdir(exist_ok=True)
            expires = ReviewTask.objects.get(case_id=case_id).lease_expires_at
            # The page renews its lease while it is open.
            assert wait_for(lambda: ReviewTask.objects.get(case_id=case_id).lease_expires_at
                            > expires)
            page.keyboard.press("+")
            assert page.inner_text("#zoom-level") == "150%"
            page.keyboard.press("z")
            page.screenshot(path=str(ARTIFACTS / "queue-review-page.png"), full_page=True)
        answer = answers[case_id]
        with page.expect_navigation():
            # A digit label is its own key.
            page.keyboard.press("c" if answer == "cannot_tell" else answer)

    # The stored decisions are the keys pressed, by this reviewer, on five different cases,
    # once their undo window has closed.
    assert pending_answers_stored() == 5
    assert Decision.objects.count() == 5
    for case_id, label in answers.items():
        decision = Decision.objects.select_related("review").get(case_id=case_id)
        assert (decision.label, decision.source, decision.review.reviewer_id) == (
            label, "human", reviewer.pk)
    assert Review.objects.filter(reviewer=reviewer).count() == 5
    # Each next image was prefetched while the reviewer looked at the one before.
    assert any(f"/cases/{tasks[1].case_id}/image/" in url for url in prefetched)

    # The sixth case is on screen; closing the tab hands it back within seconds.
    page.wait_for_url(re.compile(r".*/review/tasks/\d+/$"))
    assert int(page.inner_text("h1").split()[-1]) == tasks[5].case_id
    page.screenshot(path=str(ARTIFACTS / "queue-after-five.png"), full_page=True)
    page.close(run_before_unload=True)
    sixth = ReviewTask.objects.get(pk=tasks[5].pk)
    assert sixth.status == ReviewTask.Status.CLAIMED
    assert wait_for(lambda: ReviewTask.objects.get(pk=tasks[5].pk).lease_expires_at
                    < timezone.now() + timedelta(seconds=3))
