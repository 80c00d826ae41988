"""The guardrail on the platform: evidence since each cell's scope was published, the adaptive
audit rate it sets for the router, and the report's weights from the rate of each audit."""

from __future__ import annotations

import pytest

from reviewplatform.models import Decision, ReviewTask
from rollout import guardrails
from rollout.models import CellAuditRate
from rollout.reports.filters import ReportFilters
from rollout.selectors import policy_current
from rollout.services import policy_cell_resume, policy_publish

from . import test_rollout_services
from .test_rollout_services import answer_all, make_case

pytestmark = pytest.mark.django_db
model = test_rollout_services.model  # the champion fixture those tests use

NORTH = {"name": "north", "regions": ["north"]}
EAST = {"name": "east", "regions": ["east"]}


def _cells(deployment) -> dict[str, guardrails.CellReport]:
    return {c.region: c for c in guardrails.guardrails_check(deployment=deployment)}


def test_shadow_reviews_before_publishing_are_not_the_automated_cell_s_evidence(
        deployment, model, client_user, admin_user, reviewer):
    policy_publish(deployment=deployment, stage="shadow", actor=admin_user, reason="watch",
                   rules=[NORTH])
    truth = {make_case(deployment, model, client_user).pk: "7" for _ in range(30)}
    answer_all(reviewer, truth)
    assert _cells(deployment)["north"].agreement.n == 30  # the shadow cell's own evidence

    limited = policy_publish(deployment=deployment, stage="limited", actor=admin_user,
                             reason="go", rules=[NORTH], override_reason="tested elsewhere")

    north = _cells(deployment)["north"]
    assert (north.since, north.agreement.n, north.agreement_verdict) == (
        limited.created_at, 0, "inconclusive")


def test_a_pause_elsewhere_keeps_a_cell_s_evidence_and_a_resumed_cell_starts_afresh(
        deployment, model, client_user, admin_user, reviewer,
        django_capture_on_commit_callbacks):
    published = policy_publish(deployment=deployment, stage="limited", actor=admin_user,
                               reason="go", rules=[NORTH, EAST], audit_rate=1.0,
                               override_reason="tested elsewhere")
    truth = {}
    for _ in range(10):  # every case audited: north agrees, east never does
        truth[make_case(deployment, model, client_user, region="north").pk] = "7"
        truth[make_case(deployment, model, client_user, region="east").pk] = "1"
    answer_all(reviewer, truth)

    with django_capture_on_commit_callbacks(execute=True):
        pause = guardrails.guardrails_enforce(deployment=deployment)

    assert pause is not None and pause.paused_cells == [["east", "east"]]
    north = _cells(deployment)["north"]
    assert (north.since, north.agreement.n) == (published.created_at, 10)
    # Widening the rule to another region keeps north's evidence too.
    policy_publish(deployment=deployment, stage="limited", actor=admin_user, reason="west too",
                   rules=[{**NORTH, "regions": ["north", "west"]}, EAST], audit_rate=1.0,
                   paused_cells=[["east", "east"]], override_reason="tested elsewhere")
    assert _cells(deployment)["north"].since == published.created_at
    resumed = policy_cell_resume(deployment=deployment, actor=admin_user, rule="east",
                                 region="east", reason="retrained",
                                 override_reason="new camera settings")
    east = _cells(deployment)["east"]
    assert (east.since, east.agreement.n, east.paused) == (resumed.created_at, 0, False)


def test_the_guardrail_sets_each_cell_s_audit_rate_and_the_router_audits_at_it(
        deployment, model, client_user, admin_user, reviewer):
    policy = policy_publish(deployment=deployment, stage="limited", actor=admin_user,
                            reason="go", rules=[NORTH], audit_rate=0.05,
                            override_reason="tested elsewhere")
    # Before the first check the new cell has no evidence: the thin-evidence rate, 4 x 5%.
    first = [make_case(deployment, model, client_user) for _ in range(200)]
    audits = ReviewTask.objects.filter(case__in=first, reason="audit")
    assert 15 <= audits.count() <= 65
    assert set(audits.values_list("audit_rate", flat=True)) == {0.2}
    answer_all(reviewer, {case.pk: "1" for case in first})  # three or more disagreements

    guardrails.guardrails_enforce(deployment=deployment)

    # Leaning towards failure: every automated case of the checked version is audited. The
    # disagreements also paused the cell, in a new version (whose cells start thin again).
    stored = CellAuditRate.objects.get(deployment=deployment, rule="north", region="north")
    assert (stored.policy_version_id, stored.rate) == (policy.pk, 1.0)
    assert policy_current(deployment_id=deployment.pk).paused_cells == [["north", "north"]]


def test_a_proven_cell_falls_back_to_the_base_rate(
        deployment, model, client_user, admin_user, reviewer):
    policy_publish(deployment=deployment, stage="limited", actor=admin_user, reason="go",
                   rules=[NORTH], audit_rate=0.5, override_reason="tested elsewhere")
    cases = [make_case(deployment, model, client_user) for _ in range(200)]
    answer_all(reviewer, {case.pk: "7" for case in cases})
    assert _cells(deployment)["north"].agreement_verdict == "pass"

    guardrails.guardrails_enforce(deployment=deployment)
    later = [make_case(deployment, model, client_user) for _ in range(400)]

    rates = set(ReviewTask.objects.filter(case__in=later, reason="audit")
                .values_list("audit_rate", flat=True))
    assert rates == {0.5}
    assert CellAuditRate.objects.get(rule="north", region="north").rate == 0.5


def test_the_report_weights_each_audit_by_the_rate_it_was_drawn_at(
        deployment, model, client_user, admin_user, reviewer):
    from rollout.reports.selectors import report_build

    policy_publish(deployment=deployment, stage="limited", actor=admin_user, reason="go",
                   rules=[NORTH], audit_rate=0.05, override_reason="tested elsewhere")
    cases = [make_case(deployment, model, client_user) for _ in range(300)]
    audited = list(ReviewTask.objects.filter(case__in=cases, reason="audit"))
    answer_all(reviewer, {task.case_id: "7" if i % 2 else "1"
                          for i, task in enumerate(audited)})
    # Half the audits were drawn at 20%, half (say) at 100%: weights 5 and 1.
    heavy = [t.pk for i, t in enumerate(audited) if i % 2 == 0]
    ReviewTask.objects.filter(pk__in=heavy).update(audit_rate=1.0)
    light = [t.pk for i, t in enumerate(audited) if i % 2]
    agreed = len(light)

    report = report_build(ReportFilters(deployment=deployment))

    weighted = (agreed / 0.2) / (agreed / 0.2 + len(heavy) / 1.0)
    assert report.audits.weighted.estimate == pytest.approx(weighted)
    assert Decision.objects.filter(case__in=cases, source="model").count() == 300


def test_a_setting_of_the_earlier_rule_is_dropped_on_publish(deployment, admin_user):
    version = policy_publish(deployment=deployment, stage="limited", actor=admin_user,
                             reason="go", rules=[NORTH], override_reason="tested elsewhere",
                             guardrails={"window_days": 14, "agreement_floor": 0.9})

    assert version.guardrails == {"agreement_floor": 0.9}
