"""The rollout page's scope editor: publishing from its form fields, its live preview, and the
per-cell pause of the guardrail table."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

from rollout.selectors import policy_current
from rollout.services import policy_publish
from tests.reports_factory import decide, sim_model
from tests.test_rollout_pages_and_api import between

PAGE = "/deployments/digits/rollout/"
NORTH_DAY_FIELDS = {
    "stage": "limited", "confidence_threshold": "0.9", "audit_rate": "0.05",
    "rule-0-name": "", "rule-0-regions": ["north"], "rule-0-window-0-start": "08:00",
    "rule-0-window-0-end": "18:00", "rule-0-window-1-start": "", "rule-0-window-1-end": "",
    "rule-0-percent": "50", "rule-1-name": "",  # the empty rule the page always offers
    "rules": "[]", "rules_initial": "[]"}


def test_it_publishes_the_scope_built_with_the_form_naming_the_rule(client, admin_user,
                                                                   deployment):
    client.force_login(admin_user)

    response = client.post(f"{PAGE}publish/", {
        **NORTH_DAY_FIELDS, "action": "publish", "reason": "pilot in the north",
        "override_reason": "signed off by the team", "confirm": "yes"})

    assert response.status_code == 302
    current = policy_current(deployment_id=deployment.pk)
    assert (current.version, current.stage, current.confidence_threshold) == (2, "limited", 0.9)
    assert current.rules == [{"name": "north-0800-1800-50pct", "regions": ["north"],
                              "windows": [{"start": "08:00", "end": "18:00"}], "percent": 50}]
    assert (current.reason, current.override_reason) == ("pilot in the north",
                                                          "signed off by the team")
    page = client.get(PAGE).content.decode()
    assert 'name="rule-0-name" value="north-0800-1800-50pct"' in page


def test_it_refuses_bad_fields_beside_each_field_and_publishes_nothing(client, admin_user,
                                                                       deployment):
    client.force_login(admin_user)

    unreadable = client.post(f"{PAGE}publish/", {
        **NORTH_DAY_FIELDS, "action": "publish", "reason": "r", "confirm": "yes",
        "rule-0-percent": "half", "rule-0-window-1-start": "22:00"})
    invalid = client.post(f"{PAGE}publish/", {
        **NORTH_DAY_FIELDS, "action": "publish", "reason": "r", "confirm": "yes",
        "rule-0-percent": "150"})
    empty_window = client.post(f"{PAGE}publish/", {
        **NORTH_DAY_FIELDS, "action": "publish", "reason": "r", "confirm": "yes",
        "rule-0-window-1-start": "09:00", "rule-0-window-1-end": "09:00"})

    assert (unreadable.status_code, invalid.status_code, empty_window.status_code) == (
        400, 400, 400)
    page = unreadable.content.decode()
    assert ('<span class="field-error" data-for="rule-0-percent">percent must be a number '
            'from 0 to 100</span>') in page
    assert ('<span class="field-error" data-for="rule-0-window-1">a window needs both a start '
            'and an end</span>') in page
    assert 'value="half"' in page  # the form comes back as it was posted
    assert ('<span class="field-error" data-for="rule-0-percent">percent must be a number from '
            '0 to 100</span>') in invalid.content.decode()
    assert '<code id="error-field">rule-0-percent</code>' in between(
        invalid.content.decode(), 'id="publish"', 'id="preview"')
    assert ('data-for="rule-0-window-1">an empty window: start equals end</span>'
            in empty_window.content.decode())
    assert deployment.policy_versions.count() == 1


def test_it_refuses_a_nul_character_in_a_rule_name_or_reason_beside_the_field(
        client, admin_user, deployment):
    client.force_login(admin_user)
    publish = {**NORTH_DAY_FIELDS, "action": "publish", "reason": "r", "confirm": "yes",
               "override_reason": "signed off"}
    named = [{"name": "north\x00day", "regions": ["north"]}]

    in_field = client.post(f"{PAGE}publish/", {**publish, "rule-0-name": "north\x00day"})
    in_json = client.post(f"{PAGE}publish/", {**publish, "rules": json.dumps(named)})
    in_reason = client.post(f"{PAGE}publish/", {**publish, "reason": "pilot\x00"})
    preview = client.post(f"{PAGE}preview/", {**NORTH_DAY_FIELDS, "rule-0-name": "a\x00"})

    assert [r.status_code for r in (in_field, in_json, in_reason, preview)] == [400] * 4
    assert ('<span class="field-error" data-for="rule-0-name">a rule&#x27;s name may not '
            'contain NUL characters (\\u0000)</span>') in in_field.content.decode()
    assert ("rules[0].name: a rule&#x27;s name may not contain NUL characters (\\u0000)"
            in in_json.content.decode())
    assert "reason may not contain NUL characters" in in_reason.content.decode()
    assert preview.json()["errors"] == {
        "rule-0-name": "a rule's name may not contain NUL characters (\\u0000)"}
    assert deployment.policy_versions.count() == 1


def test_it_asks_to_confirm_a_publish_in_words_beside_the_button(client, admin_user,
                                                                  deployment):
    client.force_login(admin_user)

    response = client.post(f"{PAGE}publish/", {
        **NORTH_DAY_FIELDS, "action": "publish", "reason": "pilot",
        "override_reason": "signed off"})

    assert response.status_code == 400
    beside = between(response.content.decode(), 'id="publish"', 'id="preview"')
    assert ("tick the box to confirm: The model starts deciding cases from region north "
            "captured 08:00-18:00 local time, 50% of them, when its confidence is at least "
            "0.90 (rule north-0800-1800-50pct).") in beside
    assert deployment.policy_versions.count() == 1


def test_the_preview_says_the_proposed_policy_its_diff_and_what_changes(client, admin_user,
                                                                       deployment):
    client.force_login(admin_user)

    answer = client.post(f"{PAGE}preview/", NORTH_DAY_FIELDS)

    assert answer.status_code == 200
    body = answer.json()
    assert body["lines"][0] == (
        "The model decides cases from region north captured 08:00-18:00 local time, 50% of "
        "them, when its confidence is at least 0.90 (rule north-0800-1800-50pct).")
    assert body["diff"] == [
        "stage: shadow → limited",
        "rule north-0800-1800-50pct added: {name: north-0800-1800-50pct, percent: 50, "
        "regions: [north], windows: [{end: 18:00, start: 08:00}]}"]
    assert body["names"] == {"rule-0": "north-0800-1800-50pct"}
    assert body["errors"] == {} and body["preview"] is None
    assert deployment.policy_versions.count() == 1


def test_the_preview_answers_bad_input_with_400_and_the_field(client, admin_user, deployment,
                                                              reviewer):
    client.force_login(admin_user)

    bad = client.post(f"{PAGE}preview/", {**NORTH_DAY_FIELDS, "rule-0-regions": ["mars"]})
    unreadable = client.post(f"{PAGE}preview/", {**NORTH_DAY_FIELDS, "audit_rate": "often",
                                                 "rule-0-percent": "x"})
    bad_json = client.post(f"{PAGE}preview/", {**NORTH_DAY_FIELDS, "rules": "[{"})

    assert (bad.status_code, unreadable.status_code, bad_json.status_code) == (400, 400, 400)
    assert bad.json()["errors"] == {
        "rule-0-regions": "unknown region 'mars' (known: east, north, west)"}
    assert set(unreadable.json()["errors"]) == {"audit_rate", "rule-0-percent"}
    assert bad_json.json()["errors"]["rules"].startswith("rules are not valid JSON")
    client.force_login(reviewer)
    assert client.post(f"{PAGE}preview/", NORTH_DAY_FIELDS).status_code == 403


def test_the_preview_replays_recent_cases_with_a_sample_and_their_agreement(
        client, admin_user, deployment, client_user, reviewer):
    model = sim_model(deployment)
    noon = datetime(2026, 5, 4, 12, tzinfo=ZoneInfo("Europe/Oslo"))
    night = datetime(2026, 5, 4, 23, tzinfo=ZoneInfo("Europe/Oslo"))
    common = {"submitted_by": client_user, "reviewer": reviewer, "model_label": "7",
              "confidence": 0.99}
    day_cases = [decide(deployment, model, captured_at=noon, human=h, **common)
                 for h in ("7", "7", "1")]
    decide(deployment, model, captured_at=night, human="7", **common)  # outside the window
    decide(deployment, model, captured_at=noon, region="east", human="7", **common)
    client.force_login(admin_user)
    fields = {**NORTH_DAY_FIELDS, "rule-0-percent": ""}

    preview = client.post(f"{PAGE}preview/", {**fields, "preview": "1"}).json()["preview"]

    assert (preview["replayed"], preview["matched"], preview["added"]) == (5, 3, 3)
    assert (preview["agreement"]["agreed"], preview["agreement"]["n"]) == (2, 3)
    assert [c["id"] for c in preview["sample"]] == [c.pk for c in reversed(day_cases)]
    assert preview["sample"][0] == {
        "id": day_cases[2].pk, "region": "north", "label": "7", "confidence": 0.99,
        "human": "1", "image": f"/cases/{day_cases[2].pk}/image/",
        "url": f"/cases/{day_cases[2].pk}/"}
    # The same replay, without a script: Check evidence shows the sample's thumbnails.
    page = client.post(f"{PAGE}publish/", {**fields, "action": "evidence"}).content.decode()
    assert page.count('<img src="/cases/') == 3
    assert f'<a href="/cases/{day_cases[0].pk}/">' in page
    assert deployment.policy_versions.count() == 1


def test_it_pauses_one_cell_from_the_guardrail_table(client, admin_user, deployment):
    rules = [{"name": "day", "regions": ["east", "north"]}]
    policy_publish(deployment=deployment, stage="limited", rules=rules, actor=admin_user,
                   reason="pilot")
    client.force_login(admin_user)
    page = client.get(PAGE).content.decode()
    assert page.count('action="/deployments/digits/rollout/cell-pause/"') == 2
    assert ("Region east under rule day goes back to reviewers (paused)."
            in between(page, 'data-cell="day/east"', "</tr>"))
    # No answers yet: no evidence either way (1), of the 1,000 that would pause the cell.
    assert "<td>1 of 1,000</td>" in between(page, 'data-cell="day/east"', "</tr>")
    assert "below the floor (0.85) reaches 1,000, and passes" in page

    unconfirmed = client.post(f"{PAGE}cell-pause/", {"rule": "day", "region": "east",
                                                      "reason": "fogged camera"})
    assert unconfirmed.status_code == 400
    assert '<code id="error-field">confirm</code>' in between(
        unconfirmed.content.decode(), 'data-cell="day/east"', "</tr>")
    assert policy_current(deployment_id=deployment.pk).version == 2

    response = client.post(f"{PAGE}cell-pause/", {"rule": "day", "region": "east",
                                                   "reason": "fogged camera",
                                                   "confirm": "yes"})

    assert response.status_code == 302
    current = policy_current(deployment_id=deployment.pk)
    assert (current.version, current.kind, current.paused_cells, current.rules) == (
        3, "pause", [["day", "east"]], rules)
    page = client.get(PAGE).content.decode()
    east, north = (between(page, 'data-cell="day/east"', "</tr>"),
                   between(page, 'data-cell="day/north"', "</tr>"))
    assert '<span class="state">paused</span>' in east and "rollout/resume/" in east
    assert '<span class="state">active</span>' in north and "rollout/cell-pause/" in north
    again = client.post(f"{PAGE}cell-pause/", {"rule": "day", "region": "east",
                                               "reason": "again", "confirm": "yes"})
    assert again.status_code == 409
    assert policy_current(deployment_id=deployment.pk).version == 3


def test_it_offers_a_cell_pause_only_where_the_model_decides(client, admin_user, deployment):
    policy_publish(deployment=deployment, stage="shadow", actor=admin_user, reason="watch",
                   rules=[{"name": "day", "regions": ["north"]}])
    client.force_login(admin_user)

    page = client.get(PAGE).content.decode()
    refused = client.post(f"{PAGE}cell-pause/", {"rule": "day", "region": "north",
                                                 "reason": "x", "confirm": "yes"})

    assert "rollout/cell-pause/" not in page
    assert "not automated (shadow)" in between(page, 'data-cell="day/north"', "</tr>")
    assert refused.status_code == 409
    assert "the model decides nothing in the shadow stage" in between(
        refused.content.decode(), 'data-cell="day/north"', "</tr>")
    assert deployment.policy_versions.count() == 2


DAYTIME = {"name": "daytime", "regions": ["north", "west"]}
DAYTIME_FIELDS = {
    "stage": "limited", "confidence_threshold": "0.9", "audit_rate": "0.05",
    "rule-0-name": "daytime", "rule-0-regions": ["north", "west"], "rule-1-name": "",
    "rules": "[]", "rules_initial": "[]"}
MOVED_TO_FULL = ("Region west stays with reviewers: its guardrail pause moves from rule daytime "
                 "to the full stage (rule full).")


def west_paused(deployment):
    policy_publish(deployment=deployment, stage="limited", rules=[DAYTIME], actor=None,
                   reason="pilot")
    policy_publish(deployment=deployment, stage="limited", rules=[DAYTIME], actor=None,
                   reason="guardrail", paused_cells=[["daytime", "west"]], kind="guardrail")


def test_moving_to_full_says_the_paused_region_stays_with_reviewers_and_keeps_it(
        client, admin_user, deployment):
    west_paused(deployment)
    client.force_login(admin_user)
    full = {**DAYTIME_FIELDS, "stage": "full"}

    preview = client.post(f"{PAGE}preview/", full).json()
    unconfirmed = client.post(f"{PAGE}publish/", {**full, "action": "publish",
                                                  "reason": "go full",
                                                  "override_reason": "signed off"})
    evidence = client.post(f"{PAGE}publish/", {**full, "action": "evidence"}).content.decode()

    assert preview["lines"][-1] == "Paused by a guardrail: region west under rule full."
    assert preview["changes"] == [
        "The model decides every case when its confidence is at least 0.90.", MOVED_TO_FULL]
    assert preview["diff"][-1] == "pause moved: region west from rule daytime to rule full"
    assert unconfirmed.status_code == 400
    assert f"tick the box to confirm: {preview['changes'][0]} {MOVED_TO_FULL}" in between(
        unconfirmed.content.decode(), 'id="publish"', 'id="preview"')
    assert f"<li>{MOVED_TO_FULL}</li>" in between(evidence, 'id="changes"', "</ul>")
    assert deployment.policy_versions.count() == 3

    published = client.post(f"{PAGE}publish/", {**full, "action": "publish",
                                                 "reason": "go full", "confirm": "yes",
                                                 "override_reason": "signed off"})

    assert published.status_code == 302
    current = policy_current(deployment_id=deployment.pk)
    assert (current.version, current.stage, current.paused_cells) == (4, "full",
                                                                      [["full", "west"]])
    page = client.get(PAGE).content.decode()
    assert ("<p>Paused by a guardrail: region west under rule full.</p>"
            in between(page, 'id="scope"', "</div>"))
    assert "pause moved: region west from rule daytime to rule full" in page
    assert '<span class="state">paused</span>' in between(page, 'data-cell="full/west"',
                                                           "</tr>")


def test_renaming_or_unnaming_the_paused_rule_moves_its_pause(client, admin_user, deployment):
    west_paused(deployment)
    client.force_login(admin_user)

    renamed = client.post(f"{PAGE}preview/", {**DAYTIME_FIELDS, "rule-0-name": "daytime2"})
    unnamed = client.post(f"{PAGE}preview/", {**DAYTIME_FIELDS, "rule-0-name": ""})

    assert renamed.json()["lines"][-1] == (
        "Paused by a guardrail: region west under rule daytime2.")
    assert renamed.json()["changes"][-1] == (
        "Region west stays with reviewers: its guardrail pause moves from rule daytime to "
        "rule daytime2.")
    assert unnamed.json()["names"] == {"rule-0": "north-west"}
    assert unnamed.json()["lines"][-1] == (
        "Paused by a guardrail: region west under rule north-west.")

    response = client.post(f"{PAGE}publish/", {**DAYTIME_FIELDS, "rule-0-name": "",
                                               "action": "publish", "reason": "tidy names",
                                               "confirm": "yes"})

    assert response.status_code == 302
    current = policy_current(deployment_id=deployment.pk)
    assert (current.version, current.paused_cells, current.override_reason) == (
        4, [["north-west", "west"]], "")


def test_narrowing_the_paused_rule_drops_the_pause_from_the_summary(client, admin_user,
                                                                    deployment):
    west_paused(deployment)
    client.force_login(admin_user)

    body = client.post(f"{PAGE}preview/", {**DAYTIME_FIELDS,
                                           "rule-0-regions": ["north"]}).json()

    assert body["lines"] == [
        "The model decides cases from region north, when its confidence is at least 0.90 "
        "(rule daytime).",
        "Out-of-domain cases always go to reviewers; 5% of the model's decisions are audited "
        "by a blind review."]
    assert body["changes"][-1] == (
        "The guardrail pause of region west under rule daytime ends: rule daytime no longer "
        "takes cases from region west.")
    assert deployment.policy_versions.count() == 3


def test_publish_refuses_a_take_effect_time_and_stores_nothing(client, admin_user, deployment):
    client.force_login(admin_user)
    later = "2099-06-01T08:00:00+02:00"

    response = client.post(f"{PAGE}publish/", {
        **NORTH_DAY_FIELDS, "action": "publish", "reason": "pilot", "confirm": "yes",
        "override_reason": "signed off", "effective_at": later})

    assert response.status_code == 400
    page = response.content.decode()
    message = ("Take effect at is set: use Schedule to publish at that time, or clear it to "
               "publish now")
    assert f'<span class="field-error" data-for="effective_at">{message}</span>' in page
    assert message in between(page, 'id="publish"', 'id="preview"')
    assert f'name="effective_at" value="{later}"' in page  # kept for the Schedule button
    assert deployment.policy_versions.count() == 1
    assert deployment.scheduled_changes.count() == 0
    scheduled = client.post(f"{PAGE}publish/", {
        **NORTH_DAY_FIELDS, "action": "schedule", "reason": "pilot", "effective_at": later})
    assert scheduled.status_code == 302
    assert deployment.scheduled_changes.get().effective_at.isoformat() == (
        "2099-06-01T06:00:00+00:00")
    assert deployment.policy_versions.count() == 1
