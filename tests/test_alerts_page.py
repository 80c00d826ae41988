"""The alerts page: every alert sent to the admins is kept with its figures (a guardrail pause
with its cells, a held scheduled change with the gate's reason), beside the scheduled changes
that are coming and those that were held."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from rollout import guardrails
from rollout.alerts import admins_alert
from rollout.models import Alert
from rollout.services import policy_schedule, scheduled_changes_apply
from tests.reports_factory import sim_model
from tests.test_rollout_services import east_inputs_drift


@pytest.fixture
def site(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def _section(page: str, element_id: str) -> str:
    start = page.index(f'id="{element_id}"')
    return page[start:page.index("</table>", start)]


def test_a_guardrail_pause_is_kept_with_its_cells_and_listed(
        site, deployment, client_user, django_capture_on_commit_callbacks):
    model = sim_model(deployment)
    east_inputs_drift(deployment, model, client_user)

    with django_capture_on_commit_callbacks(execute=True):
        version = guardrails.guardrails_enforce(deployment=deployment)

    alert = Alert.objects.get()
    assert (alert.event, alert.deployment_id) == ("guardrail_pause", deployment.pk)
    assert alert.payload["policy_version"] == version.version
    assert [(c["rule"], c["region"]) for c in alert.payload["cells"]] == [("full", "east")]
    assert alert.body == version.reason  # the figures the pause was made on
    page = html.unescape(site.get("/alerts/").content.decode())
    listed = _section(page, "alerts")
    assert "guardrail paused automation" in listed
    assert f"{deployment.slug}: guardrail paused automation" in listed
    assert version.reason in listed


def test_held_and_coming_changes_are_listed_with_why(site, deployment, admin_user,
                                                      django_capture_on_commit_callbacks):
    now = timezone.now()
    held = policy_schedule(deployment=deployment, actor=admin_user, reason="open east",
                           effective_at=now + timedelta(hours=1), stage="limited",
                           rules=[{"name": "east", "regions": ["east"]}],
                           confidence_threshold=0.9, audit_rate=0.05, now=now)
    with django_capture_on_commit_callbacks(execute=True):
        scheduled_changes_apply(now=now + timedelta(hours=2))
    coming = policy_schedule(deployment=deployment, actor=admin_user, reason="open north",
                             effective_at=now + timedelta(days=3), stage="limited",
                             rules=[{"name": "north", "regions": ["north"]}],
                             confidence_threshold=0.9, audit_rate=0.05, now=now)
    held.refresh_from_db()

    page = html.unescape(site.get("/alerts/").content.decode())

    assert "open north" in _section(page, "upcoming")
    assert "open east" not in _section(page, "upcoming")
    held_rows = _section(page, "held")
    assert "open east" in held_rows and held.status_note in held_rows
    alert = Alert.objects.get(event="scheduled_change_held")
    assert alert.payload["scheduled_change"] == held.pk
    assert coming.effective_at.strftime("%Y-%m-%d %H:%M") in _section(page, "upcoming")


def test_filters_narrow_the_list_and_bad_ones_are_refused(site, deployment):
    admins_alert(subject="digits: a", body="first", payload={"event": "model_failing",
                                                                "deployment": deployment.slug})
    admins_alert(subject="all: b", body="second", payload={"event": "cases_stuck"})
    assert list(Alert.objects.values_list("event", "deployment__slug")) == [
        ("cases_stuck", None), ("model_failing", deployment.slug)]

    page = site.get("/alerts/?event=cases_stuck").content.decode()
    assert "all: b" in _section(page, "alerts") and "digits: a" not in page
    page = site.get(f"/alerts/?deployment={deployment.slug}").content.decode()
    assert "digits: a" in _section(page, "alerts") and "all: b" not in page

    for query, reason in (("deployment=nope", "there is no deployment &#x27;nope&#x27;"),
                          ("event=fire", "there is no alert kind &#x27;fire&#x27;")):
        response = site.get(f"/alerts/?{query}")
        assert response.status_code == 400
        page = response.content.decode()
        assert reason in page
        assert "digits: a" not in page and "all: b" not in page


def test_reviewers_may_not_read_alerts(client, reviewer):
    client.force_login(reviewer)
    assert client.get("/alerts/").status_code == 403


def test_the_rollout_page_lists_its_deployments_alerts_and_held_changes(
        site, deployment, admin_user, django_capture_on_commit_callbacks):
    now = timezone.now()
    policy_schedule(deployment=deployment, actor=admin_user, reason="open east",
                    effective_at=now + timedelta(hours=1), stage="limited",
                    rules=[{"name": "east", "regions": ["east"]}],
                    confidence_threshold=0.9, audit_rate=0.05, now=now)
    with django_capture_on_commit_callbacks(execute=True):
        (held,) = scheduled_changes_apply(now=now + timedelta(hours=2))
    admins_alert(subject="elsewhere", body="another deployment's", payload={
        "event": "cases_stuck"})

    page = html.unescape(site.get(f"/deployments/{deployment.slug}/rollout/").content.decode())

    scheduled = _section(page, "scheduled")
    assert "<strong>held</strong>: " + held.status_note in scheduled
    alerts = _section(page, "recent-alerts")
    assert f"{deployment.slug}: scheduled policy change held" in alerts
    assert "elsewhere" not in alerts
    assert f'href="/alerts/?deployment={deployment.slug}"' in page
