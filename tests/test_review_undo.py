"""Undo on the review page: an answer waits REVIEW_UNDO_SECONDS before it is stored, and its
reviewer can take it back until then; the withdrawn answer is kept, and the decision, the
reports and the client's event follow the answer that was stored."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone
from sklearn.datasets import load_digits

from inference.demo_model import digit_image
from review.services import (
    answers_pending,
    pending_answers_store,
    review_answer_pend,
    review_claim_next,
    review_undo,
)
from reviewplatform.errors import Conflict
from reviewplatform.models import CaseEvent, Decision, Review, ReviewTask, WithdrawnAnswer
from tests.conftest import (
    browser_login,
    other_connections_wait_closed,
    pending_answers_stored,
)
from tests.test_queue_pages import open_next, text_of
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures

TOUR = Path(__file__).resolve().parent.parent / "test-artifacts" / "tour"


def _answer(client, task: ReviewTask, answer: str):
    return client.post(f"/review/tasks/{task.pk}/answer/",
                       {"lease_token": str(task.lease_token), "answer": answer})


def test_an_answer_waits_out_its_window_and_is_stored_as_given(client, enqueue, reviewer,
                                                                settings):
    settings.REVIEW_UNDO_SECONDS = 10
    task = enqueue()
    client.force_login(reviewer)
    claimed, _ = open_next(client)
    before = timezone.now()

    _answer(client, claimed, "3")

    claimed.refresh_from_db()
    assert (claimed.status, claimed.pending_answer) == (ReviewTask.Status.CLAIMED, "3")
    assert before + timedelta(seconds=10) <= claimed.pending_until
    assert claimed.pending_until <= timezone.now() + timedelta(seconds=10)
    # The lease outlasts the window: nobody else can take the case meanwhile.
    assert claimed.lease_expires_at > claimed.pending_until
    assert not Review.objects.exists() and not Decision.objects.exists()
    # Not due yet: nothing stored.
    assert pending_answers_store(now=timezone.now()) == 0

    assert pending_answers_store(now=claimed.pending_until) == 1
    decision = Decision.objects.get(case_id=task.case_id)
    assert (decision.label, decision.source) == ("3", Decision.Source.HUMAN)
    review = Review.objects.get()
    assert (review.answer, review.reviewer_id) == ("3", reviewer.pk)
    # Seconds from claim to the answer as given, not to the end of the window.
    assert review.seconds < 10
    assert CaseEvent.objects.filter(case_id=task.case_id, type=CaseEvent.Type.DECIDED).count() == 1
    task.refresh_from_db()
    assert (task.status, task.pending_answer, task.pending_until) == (
        ReviewTask.Status.DONE, "", None)


def test_the_undo_bar_says_an_answer_that_is_not_a_label_in_words(client, enqueue, reviewer):
    enqueue()
    enqueue()
    client.force_login(reviewer)
    claimed, _ = open_next(client)

    response = _answer(client, claimed, "out_of_domain")
    page = client.get(response["Location"]).content.decode()

    assert text_of(page, "pending-answer") == "out of domain"


def test_backspace_form_takes_the_answer_back_and_the_second_answer_decides(
        client, enqueue, reviewer):
    first = enqueue()
    second = enqueue()
    client.force_login(reviewer)
    claimed, _ = open_next(client)
    assert claimed.pk == first.pk

    response = _answer(client, claimed, "3")
    page = client.get(response["Location"]).content.decode()
    assert response["Location"] == f"/review/tasks/{second.pk}/"
    assert text_of(page, "pending-answer") == "3"
    assert 'id="undo-form"' in page
    held = ReviewTask.objects.get(pk=second.pk)

    undone = client.post("/review/undo/", {"task_id": str(held.pk),
                                           "lease_token": str(held.lease_token)})

    assert undone["Location"] == f"/review/tasks/{first.pk}/"
    withdrawn = WithdrawnAnswer.objects.get()
    assert (withdrawn.case_id, withdrawn.reviewer_id, withdrawn.answer) == (
        first.case_id, reviewer.pk, "3")
    first.refresh_from_db()
    assert (first.status, first.claimed_by_id, first.pending_answer, first.pending_until) == (
        ReviewTask.Status.CLAIMED, reviewer.pk, "", None)
    assert first.lease_token == claimed.lease_token
    # The case that was on screen went back to the queue.
    held.refresh_from_db()
    assert (held.status, held.claimed_by_id) == (ReviewTask.Status.OPEN, None)
    page = client.get(undone["Location"]).content.decode()
    assert "Your answer 3 to case" in page and 'id="undo-form"' not in page

    _answer(client, first, "5")
    assert pending_answers_stored() == 1

    decision = Decision.objects.get(case_id=first.case_id)
    assert decision.label == "5"
    assert list(Review.objects.values_list("answer", flat=True)) == ["5"]
    assert WithdrawnAnswer.objects.get().answer == "3"  # the withdrawn answer stays
    # The case page lists it beside the review that decided.
    client.force_login(reviewer)
    page = client.get(f"/cases/{first.case_id}/").content.decode()
    withdrawn = page[page.index('id="withdrawn"'):]
    assert "<td>reviewer</td><td>3</td>" in withdrawn[:withdrawn.index("</table>")]


@pytest.mark.parametrize("task_id", ["²", "99999999999999999999"])
def test_undo_reads_a_task_id_that_is_no_id_as_no_case_on_screen(client, enqueue, reviewer,
                                                                 task_id):
    # "²" is a digit to str.isdigit(), not to int(); 20 digits are past the database's ids.
    first = enqueue()
    client.force_login(reviewer)
    claimed, _ = open_next(client)
    _answer(client, claimed, "3")

    undone = client.post("/review/undo/", {"task_id": task_id,
                                           "lease_token": str(claimed.lease_token)})

    assert undone.status_code == 302
    assert undone["Location"] == f"/review/tasks/{first.pk}/"
    assert WithdrawnAnswer.objects.get().answer == "3"


def test_too_late_to_undo_once_stored(client, enqueue, reviewer):
    task = enqueue()
    client.force_login(reviewer)
    claimed, _ = open_next(client)
    _answer(client, claimed, "3")
    assert pending_answers_stored() == 1

    response = client.post("/review/undo/")

    assert response.status_code == 302
    notes = [str(m) for m in get_messages(response.wsgi_request)]
    assert any(note.startswith("nothing to undo") for note in notes)
    assert Decision.objects.get(case_id=task.case_id).label == "3"
    assert not WithdrawnAnswer.objects.exists()


def test_undo_and_store_never_both_happen(enqueue, reviewer):
    enqueue()
    enqueue()
    now = timezone.now()
    one = review_claim_next(reviewer=reviewer, now=now)
    pend = review_answer_pend(task_id=one.pk, lease_token=one.lease_token, reviewer=reviewer,
                              answer="1", now=now)
    review_undo(reviewer=reviewer, now=now + timedelta(seconds=1))
    # Taken back: the sweep finds nothing to store, even after its window.
    assert pending_answers_store(now=pend.until + timedelta(seconds=1)) == 0

    two = review_claim_next(reviewer=reviewer, now=now)
    assert two.pk == one.pk  # the undone case is the reviewer's again
    pend = review_answer_pend(task_id=two.pk, lease_token=two.lease_token, reviewer=reviewer,
                              answer="2", now=now)
    assert pending_answers_store(now=pend.until) == 1
    # Stored: nothing left to take back.
    with pytest.raises(Conflict):
        review_undo(reviewer=reviewer, now=pend.until - timedelta(seconds=1))
    assert list(WithdrawnAnswer.objects.values_list("answer", flat=True)) == ["1"]
    assert list(Review.objects.values_list("answer", flat=True)) == ["2"]


def test_a_pending_case_is_nobodys_to_take(enqueue, reviewer, other_reviewer):
    task = enqueue()
    now = timezone.now()
    claimed = review_claim_next(reviewer=reviewer, now=now)
    review_answer_pend(task_id=claimed.pk, lease_token=claimed.lease_token, reviewer=reviewer,
                       answer="4", now=now)

    # Neither its reviewer (whose held case it no longer is) nor anyone else, even were its
    # lease to run out.
    assert review_claim_next(reviewer=reviewer, now=now) is None
    ReviewTask.objects.filter(pk=task.pk).update(lease_expires_at=now - timedelta(seconds=1))
    assert review_claim_next(reviewer=other_reviewer, now=now) is None
    assert [p.answer for p in answers_pending(reviewer=reviewer)] == ["4"]


def test_skip_or_stop_cannot_hand_back_a_pending_case(client, enqueue, reviewer):
    task = enqueue()
    client.force_login(reviewer)
    claimed, _ = open_next(client)
    _answer(client, claimed, "7")

    for action in ("skip", "stop"):
        client.post(f"/review/tasks/{task.pk}/{action}/",
                    {"lease_token": str(claimed.lease_token)})
    task.refresh_from_db()
    assert (task.status, task.pending_answer) == (ReviewTask.Status.CLAIMED, "7")
    assert pending_answers_stored() == 1
    assert Decision.objects.get(case_id=task.case_id).label == "7"


def test_a_pending_answer_that_no_longer_fits_sends_the_case_back_to_the_queue(
        client, enqueue, reviewer, deployment):
    task = enqueue()
    client.force_login(reviewer)
    claimed, _ = open_next(client)
    _answer(client, claimed, "7")
    deployment.labels = [label for label in deployment.labels if label != "7"]
    deployment.save(update_fields=["labels"])

    assert pending_answers_stored() == 0

    task.refresh_from_db()
    assert (task.status, task.claimed_by_id, task.pending_answer, task.pending_until) == (
        ReviewTask.Status.OPEN, None, "", None)
    assert not Decision.objects.filter(case_id=task.case_id).exists()


def test_a_wrong_label_is_refused_and_nothing_is_held(client, enqueue, reviewer):
    task = enqueue()
    client.force_login(reviewer)
    claimed, _ = open_next(client)

    response = _answer(client, claimed, "eleven")

    assert response.status_code == 400
    assert "is not one of" in response.content.decode()
    task.refresh_from_db()
    assert (task.pending_answer, task.pending_until) == ("", None)


@pytest.fixture
def leftover_connections_closed(transactional_db):
    yield
    other_connections_wait_closed()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_reviewer_undoes_an_answer_with_backspace_in_chromium(
        live_server, leftover_connections_closed, browser, enqueue, reviewer, settings):
    settings.REVIEW_UNDO_SECONDS = 60
    first = enqueue()
    second = enqueue()
    digits = load_digits()
    for task, index in ((first, 3), (second, 8)):  # real handwritten digits on screen
        digit_image(digits.data[index]).save(task.case.image.path, format="PNG")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    browser_login(page, live_server.url, "reviewer")
    page.goto(f"{live_server.url}/")
    page.click("#start")
    page.wait_for_url(re.compile(rf".*/review/tasks/{first.pk}/$"))

    page.keyboard.press("3")  # the digits deployment: each label is its own key
    page.wait_for_selector("#undo-form")
    assert page.inner_text("#pending-answer") == "3"
    assert re.fullmatch(r"in \d+ s", page.inner_text("#pending-countdown"))
    TOUR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(TOUR / "review-undo.png"), full_page=True)
    page.keyboard.press("Backspace")
    page.wait_for_url(re.compile(rf".*/review/tasks/{first.pk}/$"))
    assert page.locator("#undo-form").count() == 0
    page.keyboard.press("8")
    page.wait_for_selector("#undo-form")

    assert pending_answers_stored() == 1
    assert Decision.objects.get(case_id=first.case_id).label == "8"
    assert list(WithdrawnAnswer.objects.values_list("answer", flat=True)) == ["3"]
