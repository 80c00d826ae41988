"""Rollout services: versioned policies, routing with audits, the gate, schedules, guardrails."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.utils import timezone

from inference.models import ModelVersion, Prediction
from review.services import review_claim_next, review_submit
from reviewplatform.errors import ServiceError
from reviewplatform.models import Case, Decision, ReviewTask
from reviewplatform.pipeline import case_route
from rollout import guardrails
from rollout.models import ChangeKind, ScheduledChange
from rollout.scope import policy_diff
from rollout.selectors import policy_current
from rollout.services import (
    policy_cell_pause,
    policy_change,
    policy_pause,
    policy_publish,
    policy_rollback,
    policy_schedule,
    scheduled_changes_apply,
)
from rollout.verdicts import evidence_words

NOON = {"north": datetime(2026, 5, 4, 12, tzinfo=ZoneInfo("Europe/Oslo")),
        "east": datetime(2026, 5, 4, 12, tzinfo=ZoneInfo("Asia/Tokyo")),
        "west": datetime(2026, 5, 4, 12, tzinfo=ZoneInfo("America/Los_Angeles"))}
_ids = itertools.count()


@pytest.fixture
def model(deployment) -> ModelVersion:
    """A champion row standing in for a learner: these tests write its predictions directly."""
    return ModelVersion.objects.create(deployment=deployment, name="sim", sha256="0" * 64,
                                       artifact="models/sim.pkl", labels=deployment.labels,
                                       is_champion=True)


def make_case(deployment, model, client_user, *, region="north", captured_at=None,
              label="7", confidence=0.99, ood=False, route=True) -> Case:
    n = next(_ids)
    case = Case.objects.create(
        deployment=deployment, region=deployment.regions.get(code=region),
        external_id=f"sim-{n}", image=f"cases/sim-{n}.png", image_sha256="0" * 64, width=28,
        height=28, captured_at=captured_at or NOON[region], submitted_by=client_user)
    Prediction.objects.create(case=case, model_version=model, status=Prediction.Status.OK,
                              label=label, confidence=confidence, out_of_domain=ood)
    if route:
        case_route(case_id=case.pk)
    return case


def east_inputs_drift(deployment, model, client_user) -> None:
    """Full automation after 40 cases a region at 5% out of domain, then 60 more a region with
    the east at 50%: the guardrail's out-of-domain check pauses the east cell."""
    for region in ("north", "east"):
        for i in range(40):
            make_case(deployment, model, client_user, region=region, ood=i % 20 == 0)
    policy_publish(deployment=deployment, stage="full", rules=[], actor=None, reason="full",
                   audit_rate=0.0, guardrails={"ood_min_cases": 30})
    for region in ("north", "east"):
        for i in range(60):
            make_case(deployment, model, client_user, region=region,
                      ood=(region == "east" and i % 2 == 0) or i % 20 == 0)


def answer_all(reviewer, truth: dict[int, str]) -> int:
    answered = 0
    while (task := review_claim_next(reviewer=reviewer)) is not None:
        review_submit(task_id=task.pk, lease_token=task.lease_token, reviewer=reviewer,
                      answer=truth[task.case_id])
        answered += 1
    return answered


def test_it_refuses_an_invalid_policy_naming_the_field(deployment, admin_user):
    with pytest.raises(ServiceError) as error:
        policy_publish(deployment=deployment, stage="limited", actor=admin_user, reason="r",
                       rules=[{"name": "south", "regions": ["south"]}])
    assert error.value.field == "rules[0].regions"
    with pytest.raises(ServiceError) as error:
        policy_publish(deployment=deployment, stage="limited", actor=admin_user, reason="r",
                       rules=[], guardrails={"agreement_floor": 2})
    assert error.value.field == "guardrails.agreement_floor"
    assert deployment.policy_versions.count() == 1


def test_it_keeps_every_version_and_its_diff(deployment, admin_user):
    first = policy_current(deployment_id=deployment.pk)
    policy_publish(deployment=deployment, stage="limited", actor=admin_user, reason="north",
                   rules=[{"name": "north", "regions": ["north"], "percent": 10}])
    latest = policy_publish(deployment=deployment, stage="expanding", actor=admin_user,
                            reason="wider",
                            rules=[{"name": "north", "regions": ["north"], "percent": 25}])
    assert [v.version for v in deployment.policy_versions.order_by("version")] == [1, 2, 3]
    first.refresh_from_db()
    assert first.stage == "shadow" and first.rules == []
    previous = deployment.policy_versions.get(version=2)
    assert policy_diff(previous.spec(), latest.spec()) == [
        "stage: limited → expanding", "rule north: percent 10 → 25"]


def test_it_lets_the_model_decide_in_scope_and_audits_a_sample(deployment, model, client_user,
                                                                 admin_user, reviewer):
    policy_publish(deployment=deployment, stage="limited", actor=admin_user, reason="north",
                   rules=[{"name": "north-day", "regions": ["north"],
                           "windows": [{"start": "08:00", "end": "18:00"}]}], audit_rate=1.0)
    decided = make_case(deployment, model, client_user, region="north")
    night = make_case(deployment, model, client_user, region="north",
                      captured_at=NOON["north"] + timedelta(hours=10))
    east = make_case(deployment, model, client_user, region="east")
    unsure = make_case(deployment, model, client_user, region="north", confidence=0.5)

    decision = Decision.objects.get(case=decided)
    assert (decision.source, decision.label, decision.rule) == ("model", "7", "north-day")
    audit = ReviewTask.objects.get(case=decided)
    assert (audit.reason, audit.rule) == ("audit", "north-day")
    assert ReviewTask.objects.get(case=night).reason == "out_of_scope"
    assert ReviewTask.objects.get(case=east).reason == "out_of_scope"
    assert (ReviewTask.objects.get(case=unsure).reason,
            ReviewTask.objects.get(case=unsure).rule) == ("low_confidence", "north-day")
    # The audit answer is stored, the model's decision stands.
    answer_all(reviewer, {decided.pk: "1", night.pk: "7", east.pk: "7", unsure.pk: "7"})
    decision.refresh_from_db()
    assert (decision.source, decision.label) == ("model", "7")
    assert decided.reviews.get().answer == "1"


def test_it_sends_every_new_case_to_humans_once_paused(deployment, model, client_user,
                                                       admin_user):
    policy_publish(deployment=deployment, stage="full", rules=[], actor=admin_user,
                   reason="full", audit_rate=0)
    before = make_case(deployment, model, client_user)
    assert Decision.objects.get(case=before).source == "model"
    paused = policy_pause(deployment=deployment, actor=admin_user, reason="stop")
    case = make_case(deployment, model, client_user)
    task = ReviewTask.objects.get(case=case)
    assert (task.reason, task.policy_version_id) == ("paused", paused.pk)
    assert paused.kind == ChangeKind.PAUSE


def test_it_refuses_a_widening_without_evidence_unless_overridden(deployment, admin_user):
    rules = [{"name": "north", "regions": ["north"]}]
    with pytest.raises(ServiceError) as error:
        policy_change(deployment=deployment, actor=admin_user, reason="go", stage="limited",
                      rules=rules, confidence_threshold=0.9, audit_rate=0.05)
    assert error.value.field == "override_reason"
    assert "only 0 reviewed cases" in error.value.message
    version = policy_change(deployment=deployment, actor=admin_user, reason="go",
                            stage="limited", rules=rules, confidence_threshold=0.9,
                            audit_rate=0.05, override_reason="pilot agreed with the team")
    assert version.override_reason == "pilot agreed with the team"
    assert version.evidence["gate"] == "inconclusive"
    # Narrowing needs no evidence.
    narrower = policy_change(deployment=deployment, actor=admin_user, reason="less",
                             stage="limited", rules=[{**rules[0], "percent": 50}],
                             confidence_threshold=0.9, audit_rate=0.05)
    assert narrower.override_reason == ""


def test_it_publishes_a_widening_whose_shadow_evidence_passes(deployment, model, client_user,
                                                               admin_user, reviewer):
    truth = {}
    for region in ("north", "east"):
        for _ in range(40):
            case = make_case(deployment, model, client_user, region=region,
                             label="7" if region == "north" else "1")
            truth[case.pk] = "7"
    answer_all(reviewer, truth)
    north = [{"name": "north", "regions": ["north"]}]
    version = policy_change(deployment=deployment, actor=admin_user, reason="north is good",
                            stage="limited", rules=north, confidence_threshold=0.9,
                            audit_rate=0.05, guardrails={"min_sample": 30})
    assert version.evidence["gate"] == "pass"
    assert version.evidence["added"] == 40
    assert version.evidence["recall"] == [{"label": "7", "n": 40, "correct": 40}]
    # The figure in words people read; the stored evidence keeps the number.
    proof = version.evidence["proof_evidence"]
    assert isinstance(proof, float) and proof > 40
    assert version.evidence["gate_reason"] == (
        "agreement in the added scope 40/40 over 14 days proves it above the floor 0.85 "
        f"(evidence {evidence_words(proof)} ≥ 40)")
    assert "e+" not in version.evidence["gate_reason"]
    with pytest.raises(ServiceError) as east:  # east: the model said 1 for every 7
        policy_change(deployment=deployment, actor=admin_user, reason="east too",
                      stage="limited", rules=[*north, {"name": "east", "regions": ["east"]}],
                      confidence_threshold=0.9, audit_rate=0.05)
    assert ("agreement in the added scope 0/40 over 14 days shows it below the floor 0.85 "
            "(evidence more than 1,000,000,000 ≥ 40)") in east.value.message


@pytest.mark.parametrize(("value", "words"), [
    (0.004, "less than 0.01"), (0.4213, "0.421"), (1.0, "1"), (38.46, "38.5"),
    (999.7, "1,000"), (1021.4, "1,020"), (100_000.0, "100,000"), (1.99e8, "199,000,000"),
    (1e9, "1,000,000,000"), (3.2e15, "more than 1,000,000,000"),
    (float("inf"), "more than 1,000,000,000"),
])
def test_it_writes_evidence_in_words_people_read(value, words):
    assert evidence_words(value) == words


def test_it_rolls_back_by_publishing_a_copy(deployment, admin_user):
    policy_publish(deployment=deployment, stage="limited", actor=admin_user, reason="a",
                   rules=[{"name": "north", "regions": ["north"]}])
    policy_publish(deployment=deployment, stage="limited", actor=admin_user, reason="b",
                   rules=[{"name": "north", "regions": ["north"], "percent": 10}])
    back = policy_rollback(deployment=deployment, version=1, actor=admin_user,
                           reason="back to shadow")
    assert (back.version, back.stage, back.rules, back.copied_from) == (4, "shadow", [], 1)
    with pytest.raises(ServiceError) as error:
        policy_rollback(deployment=deployment, version=99, actor=admin_user, reason="x")
    assert error.value.field == "version"


def test_it_applies_a_scheduled_change_only_when_its_gate_passes(
        deployment, admin_user, settings, django_capture_on_commit_callbacks):
    settings.ROLLOUT_ALERT_EMAILS = ["ops@example.com"]
    now = timezone.now()
    narrowing = policy_schedule(deployment=deployment, actor=admin_user, reason="pause later",
                                effective_at=now + timedelta(hours=1), stage="paused",
                                rules=[], confidence_threshold=0.9, audit_rate=0.05, now=now)
    widening = policy_schedule(deployment=deployment, actor=admin_user, reason="open east",
                               effective_at=now + timedelta(hours=2), stage="limited",
                               rules=[{"name": "east", "regions": ["east"]}],
                               confidence_threshold=0.9, audit_rate=0.05, now=now)
    assert scheduled_changes_apply(now=now) == []
    with pytest.raises(ServiceError) as error:
        policy_schedule(deployment=deployment, actor=admin_user, reason="x", effective_at=now,
                        stage="paused", rules=[], confidence_threshold=0.9, audit_rate=0.05,
                        now=now)
    assert error.value.field == "effective_at"

    with django_capture_on_commit_callbacks(execute=True):
        scheduled_changes_apply(now=now + timedelta(hours=3))
    narrowing.refresh_from_db()
    widening.refresh_from_db()
    assert narrowing.status == ScheduledChange.Status.PUBLISHED
    assert policy_current(deployment_id=deployment.pk).stage == "paused"
    assert widening.status == ScheduledChange.Status.HELD
    assert "only 0 reviewed cases in the added scope" in widening.status_note
    (email,) = mail.outbox
    assert (email.subject, email.to) == ("[rollout] digits: scheduled policy change held",
                                         ["ops@example.com"])
    assert email.body == (f"The scheduled change {widening.pk} of digits was not published. "
                          f"{widening.status_note}")
    assert scheduled_changes_apply(now=now + timedelta(hours=4)) == []



def test_it_publishes_a_scheduled_widening_whose_evidence_passes_when_it_is_due(
        deployment, model, client_user, admin_user, reviewer):
    truth = {make_case(deployment, model, client_user, region="north").pk: "7"
             for _ in range(40)}
    assert answer_all(reviewer, truth) == 40  # shadow reviews: every one agrees with the model
    now = timezone.now()
    north = [{"name": "north", "regions": ["north"]}]
    change = policy_schedule(deployment=deployment, actor=admin_user, reason="north is good",
                             effective_at=now + timedelta(hours=1), stage="limited",
                             rules=north, confidence_threshold=0.9, audit_rate=0.05,
                             guardrails={"min_sample": 30}, now=now)
    assert scheduled_changes_apply(now=now + timedelta(minutes=59)) == []  # not due yet

    (applied,) = scheduled_changes_apply(now=now + timedelta(hours=1, minutes=1))

    change.refresh_from_db()
    version = policy_current(deployment_id=deployment.pk)
    assert applied.pk == change.pk
    assert (change.status, change.published_version_id) == (
        ScheduledChange.Status.PUBLISHED, version.pk)
    assert change.status_note == "published as version 2"
    assert (version.version, version.kind, version.stage, version.author) == (
        2, ChangeKind.SCHEDULED, "limited", admin_user)
    assert [(r["name"], r["regions"]) for r in version.rules] == [("north", ["north"])]
    assert version.rules == change.rules
    assert (version.confidence_threshold, version.audit_rate) == (0.9, 0.05)
    assert version.reason.startswith("scheduled for ") and version.reason.endswith(
        "UTC: north is good")
    assert version.override_reason == ""
    assert (version.evidence["gate"], version.evidence["passes"]) == ("pass", True)
    assert version.evidence["added"] == 40
    assert version.evidence["recall"] == [{"label": "7", "n": 40, "correct": 40}]
    # The new scope is in force: a north case is now the model's to decide.
    case = make_case(deployment, model, client_user, region="north")
    decision = Decision.objects.get(case=case)
    assert (decision.source, decision.rule, decision.policy_version_id) == (
        "model", "north", version.pk)
    assert scheduled_changes_apply(now=now + timedelta(hours=2)) == []  # applied once

class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict, bytes]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook(settings):
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    Receiver.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.ROLLOUT_ALERT_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/alerts"
    settings.ROLLOUT_ALERT_WEBHOOK_SECRET = "s3cret"
    settings.ROLLOUT_ALERT_EMAILS = ["ops@example.com"]
    yield Receiver.received
    server.shutdown()
    server.server_close()


def test_the_guardrail_pauses_the_degrading_region_and_only_that_one(
        deployment, model, client_user, admin_user, reviewer, webhook,
        django_capture_on_commit_callbacks):
    """Simulation: east's cameras switch to night-time images the model reads wrongly (yet
    confidently); north and west stay clean. Audits catch it; the guardrail pauses east."""
    policy_publish(deployment=deployment, stage="expanding", actor=admin_user,
                   reason="all regions", rules=[{"name": "all"}], audit_rate=0.5,
                   guardrails={"min_sample": 20, "agreement_floor": 0.85})
    truth = {}
    for i in range(90):
        for region in ("north", "east", "west"):
            degraded = region == "east" and i % 2 == 0
            night = NOON[region] + timedelta(hours=11) if region == "east" else NOON[region]
            case = make_case(deployment, model, client_user, region=region, captured_at=night,
                             label="1" if degraded else "7", confidence=0.97)
            truth[case.pk] = "7"
    assert guardrails.guardrails_enforce(deployment=deployment) is None  # no labels yet
    answer_all(reviewer, truth)

    reports = {r.region: r for r in guardrails.guardrails_check(deployment=deployment)}
    assert reports["north"].agreement_verdict == "pass"
    assert reports["west"].agreement_verdict == "pass"
    assert reports["east"].agreement_verdict == "fail"
    with django_capture_on_commit_callbacks(execute=True):
        paused = guardrails.guardrails_run()

    (version,) = paused
    assert version.author is None and version.kind == ChangeKind.GUARDRAIL
    assert version.paused_cells == [["all", "east"]]
    assert "region east under rule all: agreement" in version.reason
    assert version.reason.startswith(
        "Guardrail paused automation (floor 0.85, pause at evidence 1,000): ")
    east_evidence = reports["east"].agreement_test.fail_evidence
    assert (f"evidence of falling below the floor {evidence_words(east_evidence)} [fail]"
            in version.reason)
    assert "e+" not in version.reason
    assert guardrails.guardrails_run() == []  # already paused: nothing more to do
    # New cases: east goes to humans, the others stay automated.
    east = make_case(deployment, model, client_user, region="east")
    north = make_case(deployment, model, client_user, region="north")
    assert ReviewTask.objects.get(case=east).reason == "paused"
    assert Decision.objects.get(case=north).source == "model"
    # Admins were told, by email and by a signed webhook.
    (email,) = mail.outbox
    assert (email.subject, email.to) == ("[rollout] digits: guardrail paused automation",
                                         ["ops@example.com"])
    assert email.body == version.reason
    ((headers, body),) = webhook
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Rollout-Signature"] == f"sha256={expected}"
    payload = json.loads(body)
    assert payload["event"] == "guardrail_pause"
    assert [c["region"] for c in payload["cells"]] == ["east"]
    assert payload["cells"][0]["evidence"] == pytest.approx(east_evidence)  # still a number


def test_the_guardrail_pauses_on_out_of_domain_inputs_before_any_review(
        deployment, model, client_user, admin_user):
    east_inputs_drift(deployment, model, client_user)

    version = guardrails.guardrails_enforce(deployment=deployment)

    assert version is not None
    assert version.paused_cells == [["full", "east"]]
    assert "out-of-domain" in version.reason
    assert Case.objects.filter(reviews__isnull=False).count() == 0


def test_it_counts_too_few_reviews_as_inconclusive(deployment, model, client_user, admin_user,
                                                   reviewer):
    policy_publish(deployment=deployment, stage="full", rules=[], actor=admin_user,
                   reason="full", audit_rate=1.0)
    truth = {make_case(deployment, model, client_user, label="1").pk: "7" for _ in range(5)}
    answer_all(reviewer, truth)
    (north, *_) = [r for r in guardrails.guardrails_check(deployment=deployment)
                   if r.region == "north"]
    assert (north.agreement.n, north.agreement_verdict) == (5, "inconclusive")
    assert guardrails.guardrails_enforce(deployment=deployment) is None


def test_it_schedules_the_guardrail_and_the_scheduler_with_beat(settings):
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"rollout.tasks.guardrails_run", "rollout.tasks.scheduled_changes_apply"} <= tasks


def test_it_pauses_one_cell_by_hand_and_sends_only_its_cases_to_reviewers(
        deployment, model, client_user, admin_user):
    rules = [{"name": "day", "regions": ["east", "north"]}]
    policy_publish(deployment=deployment, stage="limited", rules=rules, actor=admin_user,
                   reason="pilot", audit_rate=0)

    paused = policy_cell_pause(deployment=deployment, actor=admin_user, rule="day",
                               region="east", reason="the east camera is fogged")

    assert (paused.version, paused.kind, paused.author, paused.reason) == (
        3, ChangeKind.PAUSE, admin_user, "the east camera is fogged")
    assert (paused.stage, paused.rules, paused.paused_cells) == ("limited", rules,
                                                                 [["day", "east"]])
    east, north = make_case(deployment, model, client_user, region="east"), make_case(
        deployment, model, client_user, region="north")
    assert ReviewTask.objects.get(case=east).reason == "paused"
    assert Decision.objects.get(case=north).source == "model"


@pytest.mark.parametrize(("rule", "region", "field", "status"), [
    ("day", "west", "region", 400),      # the rule takes no case from the west
    ("night", "north", "rule", 400),     # no such rule
    ("day", "east", "region", 409),      # already paused
])
def test_it_refuses_to_pause_a_cell_that_is_not_there(deployment, admin_user, rule, region,
                                                      field, status):
    policy_publish(deployment=deployment, stage="limited", actor=admin_user, reason="pilot",
                   rules=[{"name": "day", "regions": ["north", "east"]}],
                   paused_cells=[["day", "east"]])

    with pytest.raises(ServiceError) as error:
        policy_cell_pause(deployment=deployment, actor=admin_user, rule=rule, region=region,
                          reason="why")

    assert (error.value.field, error.value.status_code) == (field, status)
    assert policy_current(deployment_id=deployment.pk).version == 2


def test_it_pauses_a_cell_of_the_full_stage_but_none_in_shadow(deployment, admin_user):
    with pytest.raises(ServiceError) as error:
        policy_cell_pause(deployment=deployment, actor=admin_user, rule="full", region="north",
                          reason="why")
    assert error.value.field == "stage"
    policy_publish(deployment=deployment, stage="full", rules=[], actor=admin_user,
                   reason="all")
    with pytest.raises(ServiceError) as blank:
        policy_cell_pause(deployment=deployment, actor=admin_user, rule="full", region="west",
                          reason=" ")
    assert blank.value.field == "reason"

    version = policy_cell_pause(deployment=deployment, actor=admin_user, rule="full",
                                region="west", reason="west drifts")

    assert (version.version, version.stage, version.paused_cells) == (3, "full",
                                                                      [["full", "west"]])


DAYTIME = {"name": "daytime", "regions": ["north", "west"]}


def west_paused(deployment):
    """Limited to north and west; the guardrail has paused west."""
    policy_publish(deployment=deployment, stage="limited", rules=[DAYTIME], actor=None,
                   reason="pilot", audit_rate=0)
    return policy_publish(deployment=deployment, stage="limited", rules=[DAYTIME], actor=None,
                          reason="guardrail", audit_rate=0, paused_cells=[["daytime", "west"]],
                          kind=ChangeKind.GUARDRAIL)


@pytest.mark.parametrize(("stage", "rules", "cell"), [
    ("full", [], ["full", "west"]),
    ("limited", [{**DAYTIME, "name": "daytime2"}], ["daytime2", "west"]),
    ("limited", [{"regions": ["north", "west"]}], ["north-west", "west"]),  # name left blank
])
def test_a_change_of_scope_keeps_the_guardrails_pause(deployment, model, client_user,
                                                      admin_user, stage, rules, cell):
    before = west_paused(deployment)

    version = policy_change(deployment=deployment, actor=admin_user, reason="widen",
                            stage=stage, rules=rules, confidence_threshold=0.9, audit_rate=0,
                            override_reason="signed off")

    assert version.paused_cells == [cell]
    assert policy_diff(before.spec(), version.spec())[-1] == (
        f"pause moved: region west from rule daytime to rule {cell[0]}")
    assert not [w for w in version.evidence["widening"] if "pause" in w]
    west, north = (make_case(deployment, model, client_user, region=r) for r in ("west", "north"))
    task = ReviewTask.objects.get(case=west)
    assert (task.reason, task.rule, task.policy_version_id) == ("paused", cell[0], version.pk)
    assert Decision.objects.get(case=north).source == "model"


def test_narrowing_a_rule_away_from_the_paused_region_ends_the_pause(deployment, model,
                                                                     client_user, admin_user):
    west_paused(deployment)

    version = policy_change(deployment=deployment, actor=admin_user, reason="north only",
                            stage="limited", rules=[{**DAYTIME, "regions": ["north"]}],
                            confidence_threshold=0.9, audit_rate=0)

    assert version.paused_cells == []
    assert version.override_reason == ""  # a narrowing: no gate to pass
    west = make_case(deployment, model, client_user, region="west")
    assert ReviewTask.objects.get(case=west).reason == "out_of_scope"


def test_it_lifts_a_pause_only_when_asked_and_through_the_gate(deployment, admin_user):
    west_paused(deployment)
    change = {"deployment": deployment, "actor": admin_user, "reason": "camera fixed",
              "stage": "limited", "rules": [DAYTIME], "confidence_threshold": 0.9,
              "audit_rate": 0, "paused_cells": []}

    with pytest.raises(ServiceError) as gated:
        policy_change(**change)
    with pytest.raises(ServiceError) as unknown:
        policy_change(**{**change, "paused_cells": [["night", "west"]],
                         "override_reason": "x"})

    assert gated.value.field == "override_reason"
    assert "guardrail pause lifted: region west under rule daytime" in gated.value.message
    assert (unknown.value.field, unknown.value.status_code) == ("paused_cells[0]", 400)
    assert policy_current(deployment_id=deployment.pk).version == 3
    lifted = policy_change(**change, override_reason="checked 40 west cases by hand")
    assert lifted.paused_cells == []


def test_a_scheduled_change_keeps_the_guardrails_pause(deployment, admin_user):
    west_paused(deployment)
    now = timezone.now()
    policy_schedule(deployment=deployment, actor=admin_user, reason="rename",
                    effective_at=now + timedelta(hours=1), stage="limited",
                    rules=[{**DAYTIME, "name": "daytime2"}], confidence_threshold=0.9,
                    audit_rate=0)

    (change,) = scheduled_changes_apply(now=now + timedelta(hours=2))

    assert change.status == ScheduledChange.Status.PUBLISHED
    assert change.published_version.paused_cells == [["daytime2", "west"]]
