"""The report page, the disagreements gallery, adjudication, decision exports and /metrics."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group, User

from rollout.models import Adjudication
from rollout.reports import views as reports_views
from tests.reports_factory import decide, sim_model

DAY = datetime(2026, 5, 1, 10, 0, tzinfo=ZoneInfo("Europe/Oslo"))


@pytest.fixture
def reviewed(deployment, client_user, reviewer):
    model = sim_model(deployment)
    cases = [decide(deployment, model, submitted_by=client_user, reviewer=reviewer,
                    captured_at=DAY, model_label=m, human=h, confidence=c)
             for m, h, c in [("3", "3", 0.9), ("8", "3", 0.99), ("1", "7", 0.6),
                             ("5", "5", 0.8)]]
    decide(deployment, model, submitted_by=client_user, reviewer=reviewer, captured_at=DAY,
           model_label="2", human=None, source="model")
    return cases


@pytest.fixture
def senior(db) -> User:
    user = User.objects.create_user("senior", password="senior-password")
    user.groups.set(Group.objects.filter(name="senior reviewer"))
    return user


def text(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', html, re.S)
    assert match, f"no element #{element_id}"
    return match.group(1).strip()


def test_it_answers_the_admins_questions_on_one_page(client, admin_user, reviewed):
    client.force_login(admin_user)

    response = client.get("/deployments/digits/report/")

    assert response.status_code == 200
    html = response.content.decode()
    assert text(html, "n-cases") == "5"
    assert text(html, "agreement") == "0.500"
    assert text(html, "agreement-n") == "n = 4"
    for element in ("kappa", "human-agreement", "audit-agreement", "ece", "classes",
                    "by-region", "by-hour", "by-day", "calibration", "models", "action-mix",
                    "workload", "night-day"):
        assert f'id="{element}"' in html, element
    assert html.count("<svg") >= 7
    assert "<script" not in html  # charts and numbers without JavaScript
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_it_applies_the_filters_and_refuses_bad_ones(client, admin_user, reviewed):
    client.force_login(admin_user)

    html = client.get("/deployments/digits/report/?region=east").content.decode()
    assert text(html, "agreement-n") == "n = 0"
    response = client.get("/deployments/digits/report/?region=south")
    assert response.status_code == 400
    assert b"region" in response.content
    assert "capture dates in the server's time zone (UTC)" in html
    far = client.get("/deployments/digits/report/?to=9999-12-31")
    assert far.status_code == 400
    assert b"to must be a date from 0001-01-02 to 9999-12-30" in far.content


@pytest.mark.parametrize("path", ["/deployments/digits/report/",
                                  "/deployments/digits/report/disagreements/",
                                  "/deployments/digits/report/decisions.csv"])
def test_it_refuses_a_nul_character_in_a_filter(client, admin_user, reviewed, path):
    client.force_login(admin_user)

    response = client.get(f"{path}?region=%00")

    assert response.status_code == 400
    assert "Query parameters may not contain NUL characters." in response.content.decode()


def test_it_shows_the_last_page_of_disagreements_for_a_page_past_it(client, admin_user,
                                                                     reviewed, monkeypatch):
    monkeypatch.setattr(reports_views, "PAGE", 1)  # the two disagreements on two pages
    client.force_login(admin_user)
    url = "/deployments/digits/report/disagreements/"

    for page in ("3", "99999999999999999999"):
        html = client.get(f"{url}?page={page}").content.decode()

        assert re.findall(r'data-case="(\d+)"', html) == [str(reviewed[2].pk)], page
        assert "page=1\">← previous</a> page 2 </p>" in html
    # Not a whole number: the first page.
    for page in ("²", "two", "-1"):
        html = client.get(f"{url}?page={page}").content.decode()
        assert re.findall(r'data-case="(\d+)"', html) == [str(reviewed[1].pk)], page


def test_it_shows_disagreements_most_confident_first(client, admin_user, reviewed):
    client.force_login(admin_user)

    html = client.get("/deployments/digits/report/disagreements/").content.decode()

    ids = re.findall(r'data-case="(\d+)"', html)
    assert ids == [str(reviewed[1].pk), str(reviewed[2].pk)]
    assert "0.99" in html
    assert f"/cases/{reviewed[1].pk}/image/" in html
    assert f'href="/cases/{reviewed[1].pk}/"' in html  # the case page, not the admin's form
    # The capture time as the review page shows it: local, with its zone; UTC on hover.
    case = reviewed[1]
    local = case.captured_at.astimezone(case.region.zone)
    utc = case.captured_at.astimezone(UTC)
    assert (f'<time datetime="{utc.isoformat()}" title="{utc:%Y-%m-%d %H:%M:%S} UTC">'
            f'{local:%Y-%m-%d %H:%M} {local.tzname()}</time>') in html
    filtered = client.get("/deployments/digits/report/disagreements/?human=7").content.decode()
    assert re.findall(r'data-case="(\d+)"', filtered) == [str(reviewed[2].pk)]


def test_a_senior_reviewer_adjudicates_and_the_decision_stays(client, senior, reviewed):
    client.force_login(senior)
    case = reviewed[1]

    assert client.get("/deployments/digits/report/disagreements/").status_code == 200
    response = client.post(f"/deployments/digits/report/cases/{case.pk}/adjudicate/",
                           {"label": "8", "reason": "the stroke closes: an eight"})

    assert response.status_code == 302
    adjudication = Adjudication.objects.get(case=case)
    assert (adjudication.label, adjudication.decision_label, adjudication.model_label) == (
        "8", "3", "8")
    assert adjudication.actor == senior
    case.decision.refresh_from_db()
    assert case.decision.label == "3"


def test_it_refuses_an_adjudication_without_reason_or_by_a_reviewer(client, senior, reviewer,
                                                                     reviewed):
    case = reviewed[1]
    client.force_login(senior)
    client.post(f"/deployments/digits/report/cases/{case.pk}/adjudicate/", {"label": "8"})
    client.post(f"/deployments/digits/report/cases/{case.pk}/adjudicate/",
                {"label": "cat", "reason": "r"})
    client.force_login(reviewer)
    response = client.post(f"/deployments/digits/report/cases/{case.pk}/adjudicate/",
                           {"label": "8", "reason": "r"})

    assert response.status_code == 403
    assert not Adjudication.objects.exists()


def test_it_streams_decisions_as_csv_and_json(client, admin_user, senior, reviewed):
    Adjudication.objects.create(case=reviewed[1], label="8", decision_label="3",
                                actor=senior, reason="r")
    client.force_login(admin_user)

    response = client.get("/deployments/digits/report/decisions.csv")
    assert response.streaming
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 5
    assert rows[1]["label"] == "3" and rows[1]["model_label"] == "8"
    assert rows[1]["adjudicated_label"] == "8"
    assert rows[4]["source"] == "model"

    response = client.get("/deployments/digits/report/decisions.json?region=north")
    items = json.loads(b"".join(response.streaming_content))
    assert [i["case_id"] for i in items] == [int(r["case_id"]) for r in rows]
    assert items[0]["model_confidence"] == 0.9
    assert client.get("/deployments/digits/report/decisions.xml").status_code == 404


def test_it_keeps_the_exports_and_gallery_from_outsiders(client, outsider, reviewer, reviewed):
    for user in (outsider, reviewer):
        client.force_login(user)
        for url in ("decisions.csv", "retraining.zip", "disagreements/"):
            assert client.get(f"/deployments/digits/report/{url}").status_code == 403


def test_it_serves_metrics_to_prometheus_with_the_token(client, settings, reviewed):
    settings.METRICS_TOKEN = "scrape-me"

    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me")

    assert response.status_code == 200
    body = response.content.decode()
    assert 'predictions_total{deployment="digits",model_version="sim",status="ok"} 5.0' in body
    assert 'rollout_agreement{deployment="digits",region="north"} 0.5' in body
    assert 'rollout_automation_rate{deployment="digits"} 0.2' in body
    assert 'rollout_stage{deployment="digits",stage="shadow"} 1.0' in body
    # Five predictions of 40 ms: none within 25 ms, all within 50.
    assert 'prediction_latency_ms_bucket{deployment="digits",le="25",model_version="sim"} 0.0' \
        in body
    assert 'prediction_latency_ms_bucket{deployment="digits",le="50",model_version="sim"} 5.0' \
        in body
    assert "review_queue_depth" in body and "rollout_guardrail_state" in body


def test_metrics_report_guardrail_figures_checked_at_most_a_few_minutes_ago(
        client, settings, admin_user, deployment, monkeypatch):
    from rollout import guardrails
    from rollout.services import policy_publish

    settings.METRICS_TOKEN = ""
    client.force_login(admin_user)
    checks = []
    real = guardrails.guardrails_check
    monkeypatch.setattr(guardrails, "guardrails_check",
                        lambda **kwargs: checks.append(1) or real(**kwargs))
    policy_publish(deployment=deployment, stage="limited", actor=admin_user, reason="r",
                   rules=[{"name": "north-day", "regions": ["north"]}])
    cell = ('rollout_guardrail_state{check="agreement",deployment="digits",region="north",'
            'rule="north-day"} 1.0')  # inconclusive: no reviews yet

    assert cell in client.get("/metrics").content.decode()
    assert cell in client.get("/metrics").content.decode()
    assert len(checks) == 1  # the second scrape read the first one's figures

    guardrails.guardrails_run()  # beat's run refreshes them
    assert len(checks) == 2
    client.get("/metrics")
    assert len(checks) == 2

    policy_publish(deployment=deployment, stage="limited", actor=admin_user, reason="r",
                   rules=[{"name": "east-all", "regions": ["east"]}])
    body = client.get("/metrics").content.decode()  # a new version is checked afresh
    assert len(checks) == 3
    assert 'rule="east-all"' in body and 'rule="north-day"' not in body


def test_it_serves_metrics_to_staff_without_a_token(client, settings, admin_user, reviewer,
                                                    deployment):
    settings.METRICS_TOKEN = ""
    client.force_login(reviewer)
    assert client.get("/metrics").status_code == 403
    client.force_login(admin_user)
    assert client.get("/metrics").status_code == 200
