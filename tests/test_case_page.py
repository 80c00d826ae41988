"""The case page (everything about one case, read-only), the search that finds a case, and
the error pages that say what went wrong and lead back."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from review.services import review_claim_next, review_submit
from reviewplatform.models import Case
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures


@pytest.fixture
def decided(enqueue, reviewer):
    """A case a reviewer decided, with the champion's stored answer."""
    task = enqueue(says="4", confidence=0.97)
    claimed = review_claim_next(reviewer=reviewer)
    review_submit(task_id=claimed.pk, lease_token=claimed.lease_token, reviewer=reviewer,
                  answer="4")
    return Case.objects.get(pk=task.case_id)


def page_of(user: User, path: str):
    client = Client()
    client.force_login(user)
    return client.get(path)


def test_an_admin_reads_the_whole_case(decided, admin_user, reviewer):
    response = page_of(admin_user, f"/cases/{decided.pk}/")

    assert response.status_code == 200
    page = response.content.decode()
    assert (f'<h1 class="wrapped">Case {decided.pk} <span class="muted">'
            f"({decided.external_id})</span>") in page
    assert f'src="/cases/{decided.pk}/image/"' in page
    # Every time in the case's own zone, with its name; UTC on hover.
    assert ('<span id="captured"><time datetime="2026-05-01T19:30:00+00:00" '
            'title="2026-05-01 19:30:00 UTC">2026-05-01 21:30 CEST</time></span>') in page
    decided_at = decided.decision.decided_at.astimezone(ZoneInfo("Europe/Oslo"))
    timeline = page[page.index('id="timeline"'):page.index("</table>", page.index('id="timeline"'))]
    assert f">{decided_at:%Y-%m-%d %H:%M:%S} {decided_at.tzname()}</time>" in timeline
    assert "UTC</time>" not in page
    assert "Decision:</strong> 4 by the\n  reviewers" in page
    assert "champion (0.970)" not in page and "4 (0.970)" in page  # the model's answer
    reviews = page[page.index('id="reviews"'):page.index("Told to the client")]
    assert "<td>reviewer</td><td>4</td>" in reviews, reviews
    assert "case.decided at" in page
    assert "to review: " in page


def test_metadata_reads_as_json_and_answers_that_are_not_labels_in_words(
        enqueue, reviewer, admin_user):
    task = enqueue(says="4", confidence=0.97)
    Case.objects.filter(pk=task.case_id).update(
        metadata={"camera": "camera-7", "night": True, "lens": None})
    claimed = review_claim_next(reviewer=reviewer)
    review_submit(task_id=claimed.pk, lease_token=claimed.lease_token, reviewer=reviewer,
                  answer="cannot_tell")

    page = page_of(admin_user, f"/cases/{task.case_id}/").content.decode()

    # jsonb keeps keys shortest first
    assert ('<pre class="wrapped" id="case-metadata">{\n  &quot;lens&quot;: null,\n  '
            '&quot;night&quot;: true,\n  &quot;camera&quot;: &quot;camera-7&quot;\n}'
            '</pre>') in page
    reviews = page[page.index('id="reviews"'):page.index("Told to the client")]
    assert "<td>reviewer</td><td>cannot tell</td>" in reviews


def test_a_reviewer_opens_only_the_cases_they_reviewed(decided, enqueue, reviewer,
                                                       other_reviewer):
    waiting = enqueue(says="7").case  # still in the queue: its page would show the model

    assert page_of(reviewer, f"/cases/{decided.pk}/").status_code == 200
    assert page_of(reviewer, f"/cases/{waiting.pk}/").status_code == 404
    assert page_of(other_reviewer, f"/cases/{decided.pk}/").status_code == 404


def test_the_search_finds_a_case_by_id_or_external_id(decided, admin_user, client_user):
    by_id = page_of(admin_user, f"/cases/?q={decided.pk}")
    by_external = page_of(admin_user, f"/cases/?q={decided.external_id}")
    missing = page_of(admin_user, "/cases/?q=no-such-case")

    assert by_id.status_code == by_external.status_code == 302
    assert by_id["Location"] == by_external["Location"] == f"/cases/{decided.pk}/"
    assert missing.status_code == 404
    assert "No case you may open has the id or external id" in missing.content.decode()
    # An API client finds the cases it submitted, and no other client's.
    assert page_of(client_user, f"/cases/?q={decided.pk}").status_code == 302
    stranger = User.objects.create_user("other-client")
    assert page_of(stranger, f"/cases/?q={decided.pk}").status_code == 404


def test_the_search_reads_only_ascii_digits_as_a_case_id(decided, admin_user):
    # "²" is a digit to str.isdigit(), not to int(); 19 digits are past any id.
    for query in ("²", "99999999999999999999"):
        response = page_of(admin_user, f"/cases/?q={query}")

        assert response.status_code == 404, query
        assert "No case you may open has the id or external id" in response.content.decode()


def test_the_search_refuses_a_nul_character_with_the_400_page(decided, admin_user):
    response = page_of(admin_user, "/cases/?q=%00")

    assert response.status_code == 400
    page = response.content.decode()
    assert "Query parameters may not contain NUL characters." in page
    assert "<header>" in page  # the site's own page


def test_the_gallery_and_the_admin_lead_to_the_case_page(decided, admin_user):
    assert decided.get_absolute_url() == reverse("case-page", args=[decided.pk])
    admin_page = page_of(admin_user, f"/admin/reviewplatform/case/{decided.pk}/change/")
    assert f'href="/cases/{decided.pk}/"' in admin_page.content.decode() or \
        "/admin/r/" in admin_page.content.decode()


@pytest.mark.parametrize("path, status, words", [
    ("/no-such-page/", 404, "There is no page at /no-such-page/."),
    ("/cases/999999/", 404, "case 999999 does not exist, or is not one you may open"),
    ("/review/team/", 403, "Your account may not open this"),
])
def test_error_pages_say_what_went_wrong_and_lead_back(client_user, path, status, words,
                                                       settings):
    settings.DEBUG = False
    response = page_of(client_user, path)

    assert response.status_code == status
    page = response.content.decode()
    assert words in page
    assert '<a href="/" class="button">Back to the queue</a>' in page
    assert "<header>" in page  # the site's own page, not Django's bare one


def test_the_server_error_page_renders_without_a_request():
    from django.template.loader import render_to_string

    page = render_to_string("500.html")

    assert "Something went wrong on our side" in page
    assert '<a href="/" class="button">Back to the queue</a>' in page
