"""The review page's companions: the session goal and progress, the reviewer's last answers,
and the deployment's guidelines with example images from gold cases."""

from __future__ import annotations

import random

from review.claims import _gold_drawn
from review.guidelines import guideline_examples
from reviewplatform.models import GoldCase, ReviewTask
from tests.test_queue_pages import open_next, text_of
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures


def _answer(client, task, answer: str) -> None:
    response = client.post(f"/review/tasks/{task.pk}/answer/",
                           {"lease_token": str(task.lease_token), "answer": answer})
    assert response.status_code == 302


def test_it_counts_the_session_towards_its_goal_and_lists_the_last_answers(
        client, enqueue, reviewer):
    for _ in range(4):
        enqueue()
    client.force_login(reviewer)
    started = client.post("/review/next/", {"goal": "5"})
    task = ReviewTask.objects.get(pk=int(started["Location"].rstrip("/").split("/")[-1]))
    page = client.get(started["Location"]).content.decode()
    assert (text_of(page, "session-done"), text_of(page, "session-goal")) == ("0", "5")
    assert 'id="recent"' not in page  # nothing answered yet

    _answer(client, task, "3")
    task, _ = open_next(client)
    _answer(client, task, "8")
    _, page = open_next(client)

    assert (text_of(page, "session-done"), text_of(page, "session-goal")) == ("2", "5")
    assert '<progress max="100" value="40">' in page
    recent = page[page.index('id="recent"'):page.index("</details>")]
    assert recent.index("<strong>8</strong>") < recent.index("<strong>3</strong>")


def test_a_goal_that_is_not_a_number_falls_back_to_the_default(client, enqueue, reviewer,
                                                                settings):
    settings.REVIEW_SESSION_GOAL = 30
    enqueue()
    client.force_login(reviewer)

    started = client.post("/review/next/", {"goal": "lots"})

    page = client.get(started["Location"]).content.decode()
    assert text_of(page, "session-goal") == "30"
    assert 'value="30"' in client.get("/").content.decode()  # the dashboard's goal field


def test_it_shows_the_guidelines_as_markdown_without_raw_html(client, enqueue, reviewer,
                                                               deployment):
    deployment.guidelines = ("Answer the **digit** you see.\n\n"
                             "<script>alert(1)</script> [x](javascript:alert(1))")
    deployment.save()
    enqueue()
    client.force_login(reviewer)

    _, page = open_next(client)

    guidelines = page[page.index('id="guidelines"'):]
    assert "<strong>digit</strong>" in guidelines
    assert "<script>alert" not in page and "&lt;script&gt;" in guidelines
    assert 'href="javascript:' not in page


def test_it_shows_gold_examples_per_label_and_never_serves_them_as_gold(
        client, enqueue, reviewer, deployment, admin_user, make_case):
    golds = [GoldCase.objects.create(case=make_case(), label=label, marked_by=admin_user,
                                     is_example=example)
             for label, example in [("4", True), ("4", False), ("7", True)]]
    enqueue()
    client.force_login(reviewer)

    _, page = open_next(client)

    examples = {e.label: e.case_ids for e in guideline_examples(deployment_id=deployment.pk)}
    assert examples == {"4": [golds[0].case_id], "7": [golds[2].case_id]}
    for gold in (golds[0], golds[2]):
        assert f'src="/cases/{gold.case_id}/image/" alt="an example of {gold.label}"' in page
    assert f'src="/cases/{golds[1].case_id}/image/"' not in page
    deployment.gold_rate = 1.0
    drawn = {_gold_drawn(reviewer=reviewer, deployment=deployment, rng=random.random).case_id
             for _ in range(10)}
    assert drawn == {golds[1].case_id}  # the one gold case not shown as an example
