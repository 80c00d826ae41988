"""The reviewer's pages: the review page, the lease endpoint, the dashboards, roles and CSRF."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from review.services import review_claim_next, review_submit
from reviewplatform.models import Decision, Review, ReviewMode, ReviewTask
from rollout.services import deployment_create
from tests.conftest import REGIONS, pending_answers_stored
from tests.test_history_unchangeable import routes
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures


def text_of(page: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', page, flags=re.S)
    assert match, f"#{element_id} not on the page"
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", match.group(1)))).strip()


def table_rows(page: str, element_id: str) -> list[list[str]]:
    """The text of each cell of a table, row by row."""
    match = re.search(rf'<table id="{element_id}"[^>]*>(.*?)</table>', page, flags=re.S)
    assert match, f"table #{element_id} not on the page"
    return [[re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", cell))).strip()
             for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", match.group(1), flags=re.S)]


def open_next(client: Client) -> tuple[ReviewTask, str]:
    response = client.post("/review/next/")
    assert response.status_code == 302
    task_id = int(response["Location"].rstrip("/").split("/")[-1])
    return ReviewTask.objects.get(pk=task_id), client.get(response["Location"]).content.decode()


@pytest.mark.parametrize("url", ["/", "/review/team/", "/review/tasks/1/",
                                 "/cases/1/image/"])
def test_it_requires_a_login_for_every_page(client, deployment, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={quote(url)}"


def test_it_shows_the_image_region_local_time_and_reason(client, enqueue, reviewer):
    task = enqueue(region="east")
    client.force_login(reviewer)

    claimed, html = open_next(client)

    assert claimed.pk == task.pk
    assert f'src="/cases/{task.case_id}/image/"' in html
    assert text_of(html, "case-region") == "East (east)"
    assert text_of(html, "case-local-time") == "2026-05-02 04:30"  # Tokyo
    assert text_of(html, "task-reason") == ReviewTask.Reason.SHADOW.label
    for key in ["1", "9", "0", "c", "o", "s", "escape"]:
        assert f'data-key="{key}"' in html
    assert "csrfmiddlewaretoken" in html


OOD_REASONS = [
    {"code": "too_dark", "text": "dark image (mean brightness 12 < 40)"},
    {"code": "uncertain", "text": "uncertain model (top probability 0.41 < 0.50)"},
    {"code": "spread_out", "text": "wide spread (entropy 2.10 > 1.00 nats)"},
    {"code": "other", "text": "odd frame (seen 3 times)"},
]


def ood_items(page: str) -> list[str]:
    listed = page[page.index('id="ood-reasons"'):].split("</ul>")[0]
    return [html.unescape(item) for item in re.findall(r"<li>(.*?)</li>", listed)]


def test_it_says_why_a_case_looks_out_of_domain(client, enqueue, reviewer):
    enqueue(reason=ReviewTask.Reason.OUT_OF_DOMAIN, says="4", ood_reasons=OOD_REASONS)
    client.force_login(reviewer)

    _, page = open_next(client)

    # Blind: the reasons read from the model's own output lose their figures, by code.
    assert ood_items(page) == ["dark image (mean brightness 12 < 40)", "uncertain model",
                               "spread-out prediction", "odd frame (seen 3 times)"]
    assert "0.41" not in page
    assert "2.10" not in page


def test_it_shows_every_out_of_domain_figure_in_assisted_mode(client, enqueue, deployment,
                                                              reviewer):
    deployment.review_mode = ReviewMode.ASSISTED
    deployment.save()
    enqueue(reason=ReviewTask.Reason.OUT_OF_DOMAIN, says="4", ood_reasons=OOD_REASONS)
    client.force_login(reviewer)

    _, page = open_next(client)

    assert ood_items(page) == [reason["text"] for reason in OOD_REASONS]


def test_it_shows_the_models_answer_and_confidence_in_assisted_mode(client, enqueue,
                                                                   deployment, reviewer):
    deployment.review_mode = ReviewMode.ASSISTED
    deployment.save()
    enqueue(reason=ReviewTask.Reason.LOW_CONFIDENCE, says="4", confidence=0.8123)
    client.force_login(reviewer)

    _, html = open_next(client)

    assert text_of(html, "model-label") == "4"
    assert text_of(html, "model-confidence") == "0.81"


def test_it_hides_the_model_from_a_second_opinion_in_assisted_mode(client, enqueue, deployment,
                                                                   reviewer):
    deployment.review_mode = ReviewMode.ASSISTED
    deployment.save()
    enqueue(reason=ReviewTask.Reason.SECOND_OPINION, says="4", confidence=0.8123)
    client.force_login(reviewer)

    _, html = open_next(client)

    assert 'id="model-label"' not in html
    assert "0.81" not in html and "confidence" not in html.lower()


def test_it_reveals_the_model_only_after_the_blind_answer(client, enqueue, deployment,
                                                          reviewer):
    deployment.review_mode = ReviewMode.REVEALED
    deployment.save()
    task = enqueue(says="4", confidence=0.8123)
    client.force_login(reviewer)
    claimed, html = open_next(client)
    assert 'id="model-label"' not in html and "0.81" not in html
    token = str(claimed.lease_token)

    response = client.post(f"/review/tasks/{task.pk}/answer/",
                           {"lease_token": token, "answer": "9"})
    assert response["Location"] == f"/review/tasks/{task.pk}/"
    html = client.get(response["Location"]).content.decode()
    assert text_of(html, "model-label") == "4"
    assert text_of(html, "blind-answer") == "9"
    client.post(f"/review/tasks/{task.pk}/answer/", {"lease_token": token, "answer": "9"})
    assert not Review.objects.exists()  # kept for undo until its window closes
    assert pending_answers_stored() == 1

    review = Review.objects.get()
    assert (review.blind_answer, review.answer, review.mode) == ("9", "9", "revealed")


def test_it_prefetches_the_next_cases_image(client, enqueue, reviewer):
    enqueue()
    following = enqueue()
    client.force_login(reviewer)

    _, html = open_next(client)

    assert f'rel="prefetch" id="prefetch-next" href="/cases/{following.case_id}/image/"' in html


def test_it_renews_the_lease_from_the_page(client, enqueue, reviewer):
    enqueue()
    client.force_login(reviewer)
    task, _ = open_next(client)
    ReviewTask.objects.filter(pk=task.pk).update(
        lease_expires_at=timezone.now() + timedelta(seconds=5))

    response = client.post(f"/review/tasks/{task.pk}/lease/",
                           {"lease_token": str(task.lease_token)})

    assert response.status_code == 200
    task.refresh_from_db()
    assert task.lease_expires_at > timezone.now() + timedelta(seconds=200)


def test_it_keeps_a_closed_page_s_case_only_briefly(client, enqueue, reviewer):
    enqueue()
    client.force_login(reviewer)
    task, _ = open_next(client)

    client.post(f"/review/tasks/{task.pk}/lease/",
                {"lease_token": str(task.lease_token), "closing": "1"})

    task.refresh_from_db()
    assert task.lease_expires_at < timezone.now() + timedelta(seconds=20)


def test_it_answers_409_to_a_renewal_after_the_lease_passed_on(client, enqueue, reviewer,
                                                              other_reviewer):
    enqueue()
    client.force_login(reviewer)
    task, _ = open_next(client)
    ReviewTask.objects.filter(pk=task.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert review_claim_next(reviewer=other_reviewer).pk == task.pk

    response = client.post(f"/review/tasks/{task.pk}/lease/",
                           {"lease_token": str(task.lease_token)})

    assert response.status_code == 409
    assert "passed to another reviewer" in response.json()["error"]


def test_it_tells_a_late_reviewer_that_the_answer_was_not_stored(client, enqueue, reviewer,
                                                                 other_reviewer):
    enqueue()
    client.force_login(reviewer)
    task, _ = open_next(client)
    ReviewTask.objects.filter(pk=task.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1))
    review_claim_next(reviewer=other_reviewer)

    response = client.post(f"/review/tasks/{task.pk}/answer/",
                           {"lease_token": str(task.lease_token), "answer": "3"}, follow=True)

    assert "your answer was not stored" in response.content.decode()
    assert not Review.objects.exists()


def test_it_releases_the_case_when_the_reviewer_stops(client, enqueue, reviewer):
    enqueue()
    client.force_login(reviewer)
    task, _ = open_next(client)

    response = client.post(f"/review/tasks/{task.pk}/stop/",
                           {"lease_token": str(task.lease_token)})

    assert response["Location"] == "/"
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.OPEN and task.claimed_by is None


def test_it_refuses_a_post_without_the_csrf_token(enqueue, reviewer):
    enqueue()
    client = Client(enforce_csrf_checks=True)
    client.force_login(reviewer)

    assert client.post("/review/next/").status_code == 403
    assert not ReviewTask.objects.filter(status=ReviewTask.Status.CLAIMED).exists()


def test_it_shows_a_reviewer_their_own_figures(client, enqueue, reviewer):
    for seconds in [4, 10, 30]:
        enqueue()
        now = timezone.now()
        task = review_claim_next(reviewer=reviewer, now=now)
        review_submit(task_id=task.pk, lease_token=task.lease_token, reviewer=reviewer,
                      answer="2", now=now + timedelta(seconds=seconds))
    enqueue(reason=ReviewTask.Reason.LOW_CONFIDENCE)
    client.force_login(reviewer)

    html = client.get("/").content.decode()

    assert text_of(html, "my-today") == "3"
    assert text_of(html, "my-median") == "10.0"
    assert table_rows(html, "queue") == [
        ["deployment", "reason", "waiting", "being reviewed", "urgent", "oldest waiting for"],
        ["digits", "model not confident enough", "1", "0", "0", "0 minutes"]]
    assert "Team" not in html  # not for plain reviewers


def test_it_forbids_the_team_dashboard_to_a_reviewer(client, reviewer, deployment):
    client.force_login(reviewer)

    assert client.get("/review/team/").status_code == 403


@pytest.mark.parametrize("who", ["senior", "admin_user"])
def test_it_shows_every_reviewers_figures_to_seniors_and_admins(client, request, enqueue,
                                                                reviewer, other_reviewer, who):
    for user, seconds in [(reviewer, 6), (other_reviewer, 20)]:
        enqueue()
        now = timezone.now()
        task = review_claim_next(reviewer=user, now=now)
        review_submit(task_id=task.pk, lease_token=task.lease_token, reviewer=user,
                      answer="2", now=now + timedelta(seconds=seconds))
    old = enqueue()
    ReviewTask.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=5))
    client.force_login(request.getfixturevalue(who))

    html = client.get("/review/team/").content.decode()

    table = html[html.index('id="reviewers"'):]
    assert re.search(r"<td>reviewer</td><td class=\"num\">1</td>.*?6\.0", table, flags=re.S)
    assert re.search(r"<td>other-reviewer</td><td class=\"num\">1</td>.*?20\.0", table,
                     flags=re.S)
    assert text_of(html, "backlog-waiting") == "1"
    assert "5 hours" in text_of(html, "oldest")
    assert Decision.objects.count() == 2


def created_ago(task: ReviewTask, **delta: float) -> None:
    ReviewTask.objects.filter(pk=task.pk).update(created_at=timezone.now() - timedelta(**delta))


@pytest.fixture
def audits_waiting(enqueue, admin_user, other_reviewer, settings) -> None:
    """digits: an audit being reviewed (50 min), open ones of 12 min 30 s and 3 min, and an
    older shadow task; bears: nothing waiting."""
    settings.AUDIT_SERVE_WITHIN_SECONDS = 900
    deployment_create(slug="bears", name="Bear warning", labels=["bear", "none"],
                      regions=REGIONS, actor=admin_user)
    created_ago(enqueue(reason=ReviewTask.Reason.AUDIT), minutes=50)
    assert review_claim_next(reviewer=other_reviewer).reason == ReviewTask.Reason.AUDIT
    created_ago(enqueue(reason=ReviewTask.Reason.AUDIT), minutes=12, seconds=30)
    created_ago(enqueue(reason=ReviewTask.Reason.AUDIT), minutes=3)
    created_ago(enqueue(), hours=2)


def test_it_shows_how_long_the_oldest_audit_has_waited(client, audits_waiting, reviewer):
    client.force_login(reviewer)

    html = client.get("/").content.decode()

    assert table_rows(html, "audits") == [["deployment", "oldest audit waiting"],
                                          ["bears", "no audits waiting"],
                                          ["digits", "12 min"]]


def test_it_marks_an_audit_waiting_past_its_deadline(client, audits_waiting, senior, settings):
    settings.AUDIT_SERVE_WITHIN_SECONDS = 600
    client.force_login(senior)

    html = client.get("/review/team/").content.decode()

    assert table_rows(html, "audits")[1:] == [
        ["bears", "no audits waiting"],
        ["digits", "12 min (over 10 min: served before other tasks)"]]


def test_it_reports_the_oldest_audit_s_age_to_prometheus(client, audits_waiting, settings):
    settings.METRICS_TOKEN = "scrape-me"

    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").content.decode()

    ages = dict(re.findall(r'^oldest_audit_age_seconds\{deployment="(\w+)"\} (\S+)$', body,
                           flags=re.M))
    assert ages["bears"] == "0.0"
    assert 750 <= float(ages["digits"]) < 760


def test_it_puts_a_skipped_case_back_and_serves_it_only_when_nothing_else_is_left(
        client, enqueue, reviewer):
    first, second = enqueue(), enqueue()  # same reason: served oldest first
    client.force_login(reviewer)
    task, _ = open_next(client)
    assert task.pk == first.pk

    response = client.post(f"/review/tasks/{task.pk}/skip/",
                           {"lease_token": str(task.lease_token)})

    # The skipped task is back in the queue, held by nobody ...
    task.refresh_from_db()
    assert (task.status, task.claimed_by_id, task.lease_token, task.lease_expires_at) == (
        ReviewTask.Status.OPEN, None, None, None)
    # ... and the reviewer is handed the other one.
    assert response.status_code == 302
    assert response["Location"] == f"/review/tasks/{second.pk}/"
    second.refresh_from_db()
    assert (second.status, second.claimed_by_id) == (ReviewTask.Status.CLAIMED, reviewer.pk)

    answered = client.post(f"/review/tasks/{second.pk}/answer/",
                           {"lease_token": str(second.lease_token), "answer": "3"})

    # Nothing else is left: now the skipped one comes back to the reviewer.
    assert answered["Location"] == f"/review/tasks/{first.pk}/"
    first.refresh_from_db()
    assert (first.status, first.claimed_by_id) == (ReviewTask.Status.CLAIMED, reviewer.pk)
    assert pending_answers_stored() == 1
    assert list(Review.objects.values_list("task_id", "answer")) == [(second.pk, "3")]


def test_it_counts_arrival_rates_over_the_time_the_queue_has_existed(client, enqueue, senior):
    # A platform started half an hour ago: four tasks, one answered. Per hour that is 8
    # arrivals and 2 answers, not a day's average of a few minutes' work.
    tasks = [enqueue() for _ in range(4)]
    for task in tasks:
        created_ago(task, minutes=30)
    claimed = review_claim_next(reviewer=senior)
    review_submit(task_id=claimed.pk, lease_token=claimed.lease_token, reviewer=senior,
                  answer="2")
    client.force_login(senior)

    html = client.get("/review/team/").content.decode()

    assert text_of(html, "rate-window") == "30 minutes"
    assert "(since the first task)" in html
    assert text_of(html, "arrivals") == "8.0"
    assert text_of(html, "answered") == "2.0"


def test_a_task_id_past_the_databases_range_is_not_found(client, enqueue, reviewer):
    task = enqueue()
    client.force_login(reviewer)
    huge = "99999999999999999999"  # past bigint: the database would refuse to compare it

    responses = [client.get(f"/review/tasks/{huge}/")] + [
        client.post(f"/review/tasks/{huge}/{action}/", {"lease_token": "x", "answer": "3"})
        for action in ("skip", "answer", "stop", "lease")]

    assert [r.status_code for r in responses] == [404] * 5
    task.refresh_from_db()
    assert (task.status, task.claimed_by_id) == (ReviewTask.Status.OPEN, None)


def test_every_route_with_a_database_id_refuses_one_past_its_range(admin_client):
    # Every id in a URL is read by the `id` converter (1 to 18 digits): a longer one is no
    # id of the platform, whatever the view behind it.
    with_ids = [route for route, _ in routes() if "<id:" in route]
    assert "review/tasks/<id:task_id>/skip/" in with_ids
    assert not [route for route, _ in routes() if "<int:" in route]

    for route in with_ids:
        path = "/" + re.sub(r"<id:\w+>", "9" * 19, route).replace("<slug:slug>", "digits")
        path = path.replace("<str:fmt>", "csv")
        for method in (admin_client.get, admin_client.post):
            assert method(path).status_code == 404, (method, path)
    assert reverse("case-page", args=[10**17]) == f"/cases/{10**17}/"
