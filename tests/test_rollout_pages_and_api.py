"""The rollout page and the staff API: walk a deployment from shadow to limited to full."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from rest_framework.test import APIClient

from rollout.models import PolicyVersion
from rollout.selectors import policy_current
from rollout.services import policy_publish
from tests.reports_factory import decide, sim_model

NORTH_DAY = [{"name": "north-day", "regions": ["north"],
              "windows": [{"start": "08:00", "end": "18:00"}], "percent": 25}]


@pytest.fixture
def staff_api(admin_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def test_it_shows_the_scope_in_plain_words_and_the_history(client, admin_user, deployment):
    client.force_login(admin_user)
    client.post("/deployments/digits/rollout/publish/", {
        "action": "publish", "stage": "limited", "rules": json.dumps(NORTH_DAY),
        "confidence_threshold": "0.9", "audit_rate": "0.05", "reason": "pilot in the north",
        "override_reason": "agreed with the team before the evidence existed",
        "confirm": "yes"})

    html = client.get("/deployments/digits/rollout/").content.decode()

    assert ("The model decides cases from region north captured 08:00-18:00 local time, "
            "25% of them, when its confidence is at least 0.90 (rule north-day).") in html
    assert "stage: shadow → limited" in html
    assert "override: agreed with the team" in html
    assert 'id="pause"' in html


def test_it_shows_the_evidence_without_publishing(client, admin_user, deployment):
    client.force_login(admin_user)

    response = client.post("/deployments/digits/rollout/publish/", {
        "action": "evidence", "stage": "limited", "rules": json.dumps(NORTH_DAY),
        "confidence_threshold": "0.9", "audit_rate": "0.05", "reason": ""})

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="gate">inconclusive' in html
    assert "Replay of the last 14 days" in html
    assert policy_current(deployment_id=deployment.pk).version == 1


def test_it_refuses_an_invalid_scope_from_the_editor_naming_the_field(client, admin_user,
                                                                      deployment):
    client.force_login(admin_user)

    response = client.post("/deployments/digits/rollout/publish/", {
        "action": "publish", "stage": "limited",
        "rules": json.dumps([{"name": "x", "percent": 150}]), "confidence_threshold": "0.9",
        "audit_rate": "0.05", "reason": "r"})

    assert response.status_code == 400
    assert '<code id="error-field">rules[0].percent</code>' in response.content.decode()
    assert deployment.policy_versions.count() == 1


def test_it_needs_a_csrf_token_to_change_the_policy(admin_user, deployment):
    from django.test import Client
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    response = client.post("/deployments/digits/rollout/pause/", {"reason": "stop"})

    assert response.status_code == 403
    assert deployment.policy_versions.count() == 1


def test_it_offers_pause_only_where_the_model_decides_something(client, admin_user,
                                                                deployment):
    client.force_login(admin_user)
    assert 'id="pause-form"' not in client.get("/deployments/digits/rollout/").content.decode()

    policy_publish(deployment=deployment, stage="full", rules=[], actor=admin_user,
                   reason="test", override_reason="test: no evidence needed")

    assert 'id="pause-form"' in client.get("/deployments/digits/rollout/").content.decode()


def test_it_pauses_and_rolls_back_from_the_page(client, admin_user, deployment):
    client.force_login(admin_user)
    client.post("/deployments/digits/rollout/pause/", {"reason": "incident",
                                                           "confirm": "yes"})
    assert policy_current(deployment_id=deployment.pk).stage == "paused"

    client.post("/deployments/digits/rollout/rollback/", {"version": "1", "confirm": "yes",
                                                          "reason": "incident over"})

    current = policy_current(deployment_id=deployment.pk)
    assert (current.stage, current.copied_from, current.kind) == ("shadow", 1, "rollback")


def between(page: str, start: str, end: str = "</form>") -> str:
    """The part of a page from `start` to the next `end`."""
    at = page.index(start)
    return page[at:page.index(end, at)]


def test_a_second_pause_says_why_it_is_refused_at_the_top(client, admin_user, deployment):
    policy_publish(deployment=deployment, stage="full", rules=[], actor=admin_user,
                   reason="test", override_reason="test: no evidence needed")
    client.force_login(admin_user)
    first = client.post("/deployments/digits/rollout/pause/", {"reason": "incident",
                                                               "confirm": "yes"})
    assert first.status_code == 302

    again = client.post("/deployments/digits/rollout/pause/", {"reason": "incident",
                                                               "confirm": "yes"})

    assert again.status_code == 409
    page = again.content.decode()
    assert 'id="pause-form"' not in page
    assert page.count('id="error"') == 1
    assert ('<div class="refused" id="error" role="alert"><strong>automation is already '
            'paused</strong>') in between(page, "</h1>", '<div class="card">')
    assert deployment.policy_versions.count() == 3


def test_pause_and_rollback_wait_for_a_confirmation_and_say_so_beside_the_action(
        client, admin_user, deployment):
    policy_publish(deployment=deployment, stage="full", rules=[], actor=admin_user,
                   reason="test", override_reason="test: no evidence needed")
    client.force_login(admin_user)

    unconfirmed = client.post("/deployments/digits/rollout/pause/", {"reason": "incident"})
    back = client.post("/deployments/digits/rollout/rollback/", {"version": "1",
                                                                 "reason": "back to shadow"})
    no_reason = client.post("/deployments/digits/rollout/pause/", {"confirm": "yes"})

    assert (unconfirmed.status_code, back.status_code, no_reason.status_code) == (400, 400, 400)
    page = unconfirmed.content.decode()
    assert ("tick the box to confirm: Automation stops: every new case goes to reviewers."
            in between(page, 'id="pause-form"'))
    assert page.count('id="error"') == 1
    rollback_row = between(back.content.decode(), '<input type="hidden" name="version" value="1">')
    assert ("tick the box to confirm: rolling back to version 1: The model stops deciding: "
            "every new case goes to reviewers, blind to the model.") in rollback_row
    assert '<code id="error-field">reason</code>' in between(no_reason.content.decode(),
                                                             'id="pause-form"')
    assert deployment.policy_versions.count() == 2  # nothing published


def test_a_rollback_that_widens_takes_an_override_from_the_page(client, admin_user,
                                                                 deployment):
    policy_publish(deployment=deployment, stage="full", rules=[], actor=admin_user,
                   reason="test", override_reason="test: no evidence needed")
    policy_publish(deployment=deployment, stage="paused", rules=[], actor=admin_user,
                   reason="incident")
    client.force_login(admin_user)
    page = client.get("/deployments/digits/rollout/").content.decode()
    assert 'name="override_reason" placeholder="override reason, if it widens' in page

    refused = client.post("/deployments/digits/rollout/rollback/",
                          {"version": "2", "confirm": "yes", "reason": "fixed"})
    assert refused.status_code == 400
    # The gate's reason and the override field, inside that version's rollback form.
    row = between(refused.content.decode(), '<input type="hidden" name="version" value="2">')
    assert '<code id="error-field">override_reason</code>' in row
    assert "its evidence gate did not pass: only 0 reviewed cases" in row
    assert 'name="override_reason"' in row
    done = client.post("/deployments/digits/rollout/rollback/",
                       {"version": "2", "confirm": "yes", "reason": "fixed",
                        "override_reason": "the incident was the camera, now replaced"})

    assert done.status_code == 302
    current = policy_current(deployment_id=deployment.pk)
    assert (current.stage, current.copied_from, current.override_reason) == (
        "full", 2, "the incident was the camera, now replaced")


def test_its_cells_read_paused_while_all_automation_is(client, admin_user, deployment):
    policy_publish(deployment=deployment, stage="limited", actor=admin_user, reason="pilot",
                   rules=NORTH_DAY, override_reason="tested elsewhere")
    client.force_login(admin_user)
    assert ('<span class="state">active</span>'
            in client.get("/deployments/digits/rollout/").content.decode())

    client.post("/deployments/digits/rollout/pause/", {"reason": "incident",
                                                           "confirm": "yes"})

    page = client.get("/deployments/digits/rollout/").content.decode()
    assert 'paused with all automation</td>' in page
    assert '<span class="state">active</span>' not in page


def test_it_keeps_the_page_and_its_actions_from_reviewers(client, reviewer, deployment):
    client.force_login(reviewer)
    assert client.get("/deployments/digits/rollout/").status_code == 403
    assert client.post("/deployments/digits/rollout/pause/", {}).status_code == 403


def test_the_api_walks_a_deployment_from_shadow_to_full(staff_api, deployment):
    url = "/api/v1/deployments/digits/policy/"
    refused = staff_api.post(url, {"stage": "limited", "rules": NORTH_DAY,
                                   "confidence_threshold": 0.9, "audit_rate": 0.05,
                                   "reason": "pilot"}, format="json")
    assert refused.status_code == 400
    assert "override_reason" in refused.json()["fields"]

    limited = staff_api.post(url, {"stage": "limited", "rules": NORTH_DAY,
                                   "confidence_threshold": 0.9, "audit_rate": 0.05,
                                   "reason": "pilot", "override_reason": "team sign-off"},
                             format="json")
    assert limited.status_code == 201, limited.json()
    full = staff_api.post(url, {"stage": "full", "rules": [], "confidence_threshold": 0.95,
                                "audit_rate": 0.05, "reason": "all", "override_reason": "ok"},
                          format="json")
    assert full.status_code == 201
    history = staff_api.get(f"{url}history/").json()["versions"]
    assert [v["stage"] for v in history] == ["full", "limited", "shadow"]
    assert "stage: limited → full" in history[0]["diff"]
    assert staff_api.get(url).json()["scope_in_words"][0].startswith(
        "The model decides every case")


def test_the_api_answers_bad_input_with_a_reason(staff_api, deployment):
    url = "/api/v1/deployments/digits/policy/"
    cases = [
        (url, {"stage": "limited", "rules": [{"name": "r", "regions": ["mars"]}],
               "confidence_threshold": 0.9, "audit_rate": 0.05, "reason": "x"},
         "rules[0].regions"),
        (url, {"stage": "limited", "rules": [], "confidence_threshold": 1.5,
               "audit_rate": 0.05, "reason": "x"}, "confidence_threshold"),
        (url, {"stage": "warp", "rules": [], "confidence_threshold": 0.9, "audit_rate": 0.05,
               "reason": "x"}, "stage"),
        (f"{url}rollback/", {"version": 42, "reason": "x"}, "version"),
        (f"{url}schedule/", {"stage": "paused", "rules": [], "confidence_threshold": 0.9,
                             "audit_rate": 0.05, "reason": "x",
                             "effective_at": "2020-01-01T00:00:00+00:00"}, "effective_at"),
    ]
    for path, body, field in cases:
        response = staff_api.post(path, body, format="json")
        assert 400 <= response.status_code < 500, (path, response.json())
        assert field in response.json()["fields"], response.json()
    assert deployment.policy_versions.count() == 1


def test_the_api_refuses_a_nul_character_anywhere_in_a_json_body(staff_api, deployment):
    url = "/api/v1/deployments/digits/policy/"
    change = {"stage": "limited", "rules": [{**NORTH_DAY[0], "name": "north\u0000day"}],
              "confidence_threshold": 0.9, "audit_rate": 0.05, "reason": "x",
              "override_reason": "signed off"}
    cases = [
        (url, change, "rules[0].name"),
        (url, {**change, "rules": NORTH_DAY, "reason": "pilot\u0000"}, "reason"),
        # In a key, the object holding it is named.
        (url, {**change, "rules": [{**NORTH_DAY[0], "na\u0000me": "x"}]}, "rules[0]"),
        (f"{url}pause/", {"reason": "\u0000"}, "reason"),
        (f"{url}pause/", {"reason": "stop", "\u0000": 1}, "non_field_errors"),
    ]
    for path, body, field in cases:
        response = staff_api.post(path, json.dumps(body), content_type="application/json")

        assert response.status_code == 400, (path, response.content)
        assert response.json() == {
            "code": "invalid",
            "message": f"invalid input ({field}: text may not contain NUL characters "
                       "(\\u0000))",
            "fields": {field: ["text may not contain NUL characters (\\u0000)"]}}
    assert deployment.policy_versions.count() == 1


def test_the_api_replays_and_schedules(staff_api, deployment):
    url = "/api/v1/deployments/digits/policy/"
    evidence = staff_api.post(f"{url}evidence/", {
        "stage": "limited", "rules": NORTH_DAY, "confidence_threshold": 0.9,
        "audit_rate": 0.05}, format="json").json()
    assert evidence["evidence"]["gate"] == "inconclusive"
    assert evidence["diff"][0] == "stage: shadow → limited"
    scheduled = staff_api.post(f"{url}schedule/", {
        "stage": "limited", "rules": NORTH_DAY, "confidence_threshold": 0.9,
        "audit_rate": 0.05, "reason": "open north on Monday",
        "effective_at": "2099-06-01T08:00:00+02:00"}, format="json")
    assert scheduled.status_code == 201
    change = scheduled.json()["id"]
    cancelled = staff_api.post(f"{url}schedule/{change}/cancel/")
    assert cancelled.json()["status"] == "cancelled"
    # Shadow stage: the model decides nowhere, so there is no cell to guard.
    assert staff_api.get(f"{url}guardrails/").json() == {"cells": []}


def test_the_api_reports_the_guardrail_figures_of_each_cell_of_a_limited_stage(
        staff_api, deployment, admin_user, client_user, reviewer):
    policy_publish(deployment=deployment, stage="limited", actor=admin_user, reason="pilot",
                   rules=[*NORTH_DAY, {"name": "east", "regions": ["east"]}],
                   guardrails={"min_sample": 4, "agreement_floor": 0.5})
    model = sim_model(deployment)
    at = datetime(2026, 5, 4, 10, tzinfo=ZoneInfo("Europe/Oslo"))
    common = {"submitted_by": client_user, "reviewer": reviewer, "captured_at": at,
              "region": "north", "rule": "north-day", "model_label": "7"}
    for audit in ("7", "7", "7", "1"):  # audits of the model's decisions: 3 of 4 agree
        decide(deployment, model, source="model", human=None, audit=audit, **common)
    decide(deployment, model, human="7", reason="low_confidence", confidence=0.6, **common)
    decide(deployment, model, human="7", reason="out_of_domain", ood=True, **common)

    cells = staff_api.get("/api/v1/deployments/digits/policy/guardrails/").json()["cells"]

    north, east = cells
    assert (north["rule"], north["region"], north["paused"]) == ("north-day", "north", False)
    # Four answers are thin evidence at any floor: inconclusive, never a pause. The figures by
    # hand (floor 0.5, answers agree, agree, agree, disagree): the e-detector's alternatives
    # 0.45 and 0.25 restart at each agreement and end at 0.55/0.5 and 0.75/0.5 after the
    # disagreement, averaging 1.3; the proof's alternatives 0.53, 0.57, 0.62 give
    # (q/0.5)^3 ((1-q)/0.5), averaging 1.2809.
    assert north["agreement"] == {
        "agreed": 3, "n": 4, "low": pytest.approx(0.3006, abs=1e-3),
        "high": pytest.approx(0.9544, abs=1e-3), "verdict": "inconclusive",
        "fail_evidence": pytest.approx(1.3), "pass_evidence": pytest.approx(1.2809, abs=1e-4),
        "answers_to_prove": 46}
    # Not proven and not leaning: audited at the thin-evidence rate, 4 x the policy's 5%.
    assert north["audit_rate"] == pytest.approx(0.2)
    assert north["low_confidence_reviews"] == {"agreed": 1, "n": 1}
    # Out of domain: 1 of the 4 model decisions and 2 cases sent on; no shadow baseline.
    assert north["out_of_domain"] == {"count": 1, "n": 6, "baseline": None, "limit": None,
                                      "fail_evidence": None, "verdict": "inconclusive"}
    published = PolicyVersion.objects.get(deployment=deployment, version=2).created_at
    assert east == {"rule": "east", "region": "east", "paused": False,
                    "since": published.isoformat(),
                    "audit_rate": pytest.approx(0.2),
                    "agreement": {"agreed": 0, "n": 0, "low": None, "high": None,
                                  "verdict": "inconclusive", "fail_evidence": 1.0,
                                  "pass_evidence": 1.0, "answers_to_prove": 22},
                    "low_confidence_reviews": {"agreed": 0, "n": 0},
                    "out_of_domain": {"count": 0, "n": 0, "baseline": None, "limit": None,
                                      "fail_evidence": None, "verdict": "inconclusive"}}
    assert north["since"] == east["since"]


def test_the_api_is_for_staff_only(client_user, reviewer, deployment, api):
    for user in (reviewer,):
        client = APIClient()
        client.force_authenticate(user)
        assert client.post("/api/v1/deployments/digits/policy/pause/",
                           {"reason": "x"}).status_code == 403
    assert api.get("/api/v1/deployments/digits/policy/history/").status_code == 403
    anonymous = APIClient().get("/api/v1/deployments/digits/policy/")
    assert (anonymous.status_code, anonymous["WWW-Authenticate"]) == (401, "Api-Key")


def test_it_resumes_one_paused_cell_from_the_page_through_the_gate(client, admin_user,
                                                                   reviewer, deployment):
    rules = [{"name": "all", "regions": ["north", "east"]}]
    paused = policy_publish(deployment=deployment, stage="limited", rules=rules, actor=None,
                            reason="guardrail", paused_cells=[["all", "east"], ["all", "north"]])
    client.force_login(reviewer)
    assert client.post("/deployments/digits/rollout/resume/",
                       {"rule": "all", "region": "east"}).status_code == 403
    client.force_login(admin_user)
    html = client.get("/deployments/digits/rollout/").content.decode()
    assert html.count('action="/deployments/digits/rollout/resume/"') == 2

    not_paused = client.post("/deployments/digits/rollout/resume/",
                             {"rule": "all", "region": "west", "reason": "r", "confirm": "yes"})
    assert not_paused.status_code == 400
    assert '<code id="error-field">region</code>' in not_paused.content.decode()
    # No reviews yet: the evidence is inconclusive, so resuming needs an override reason,
    # which the refusal asks for inside that cell's row.
    refused = client.post("/deployments/digits/rollout/resume/", {
        "rule": "all", "region": "east", "reason": "fixed the camera", "confirm": "yes"})
    assert refused.status_code == 400
    row = between(refused.content.decode(), 'data-cell="all/east"', "</tr>")
    assert '<code id="error-field">override_reason</code>' in row
    assert "The model decides again in region east under rule all." in row
    assert policy_current(deployment_id=deployment.pk).version == 2

    response = client.post("/deployments/digits/rollout/resume/", {
        "rule": "all", "region": "east", "reason": "fixed the camera", "confirm": "yes",
        "override_reason": "checked 50 east cases by hand"})

    assert response.status_code == 302
    current = policy_current(deployment_id=deployment.pk)
    assert current.version == 3
    assert current.paused_cells == [["all", "north"]]  # the other cell stays paused
    assert (current.stage, current.rules, current.author) == ("limited", paused.rules,
                                                              admin_user)
    assert current.override_reason == "checked 50 east cases by hand"


def test_the_api_keeps_a_guardrails_pause_and_refuses_a_pause_of_no_cell(staff_api,
                                                                       deployment):
    rules = [{"name": "daytime", "regions": ["north", "west"]}]
    policy_publish(deployment=deployment, stage="limited", rules=rules, actor=None,
                   reason="guardrail", paused_cells=[["daytime", "west"]])
    change = {"stage": "full", "rules": [], "confidence_threshold": 0.9, "audit_rate": 0.05,
              "reason": "go full", "override_reason": "signed off"}

    evidence = staff_api.post("/api/v1/deployments/digits/policy/evidence/", change,
                              format="json")
    refused = staff_api.post("/api/v1/deployments/digits/policy/",
                             {**change, "paused_cells": [["daytime", "west"], ["night", "west"]]},
                             format="json")
    assert evidence.status_code == 200
    assert evidence.json()["proposed"]["paused_cells"] == [["full", "west"]]
    assert refused.status_code == 400
    assert list(refused.json()["fields"]) == ["paused_cells[1]"]
    assert policy_current(deployment_id=deployment.pk).version == 2

    published = staff_api.post("/api/v1/deployments/digits/policy/", change, format="json")

    assert published.status_code == 201
    body = published.json()
    assert (body["version"], body["stage"], body["paused_cells"]) == (3, "full",
                                                                      [["full", "west"]])
    assert body["scope_in_words"][-1] == "Paused by a guardrail: region west under rule full."
    assert body["diff"] == ["stage: limited → full", "rule daytime removed",
                            "pause moved: region west from rule daytime to rule full"]
