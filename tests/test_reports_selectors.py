"""The report's aggregates: agreement and its bar, where the model fails, since when."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from django.http import QueryDict
from sklearn.metrics import cohen_kappa_score

from reviewplatform.errors import ServiceError
from rollout.reports import stats
from rollout.reports.figures import Report
from rollout.reports.filters import ReportFilters, report_filters_parse
from rollout.reports.selectors import report_build
from rollout.services import policy_publish
from tests.reports_factory import decide, second_opinion, sim_model

OSLO, TOKYO = ZoneInfo("Europe/Oslo"), ZoneInfo("Asia/Tokyo")
# A Friday in Oslo, 21:30 local (night) and 10:00 local (day).
NIGHT = datetime(2026, 5, 1, 21, 30, tzinfo=OSLO)
DAY = datetime(2026, 5, 1, 10, 0, tzinfo=OSLO)


@pytest.fixture
def model(deployment):
    return sim_model(deployment)


@pytest.fixture
def make(deployment, model, client_user, reviewer):
    def make(**kwargs):
        kwargs.setdefault("captured_at", DAY)
        return decide(deployment, model, submitted_by=client_user, reviewer=reviewer, **kwargs)
    return make


def filters(deployment, **params) -> ReportFilters:
    query = QueryDict(mutable=True)
    query.update(params)
    return report_filters_parse(deployment=deployment, params=query)


def report(deployment, **params) -> Report:
    """The report page's figures under the filters."""
    return report_build(filters(deployment, **params))


PAIRS = [("3", "3", 0.95), ("3", "3", 0.92), ("5", "5", 0.97), ("8", "3", 0.99),
         ("1", "7", 0.55), ("7", "7", 0.85)]


@pytest.fixture
def reviewed(deployment, make):
    """Six human decisions: four agree with the model, two do not (one very confident)."""
    return [make(model_label=m, human=h, confidence=c) for m, h, c in PAIRS]


def test_it_measures_agreement_kappa_and_per_class_figures(deployment, reviewed):
    h = report(deployment).headline

    assert (h.agreement.agreed, h.agreement.n) == (4, 6)
    expected = cohen_kappa_score([p[1] for p in PAIRS], [p[0] for p in PAIRS])
    assert h.kappa.kappa == pytest.approx(expected)
    labels = deployment.labels
    assert h.confusion[labels.index("3")][labels.index("8")] == 1
    three = next(c for c in h.classes if c.label == "3")
    assert (three.support, three.predicted, three.correct) == (3, 2, 2)
    assert three.precision == 1.0 and three.recall == pytest.approx(2 / 3)
    eight = next(c for c in h.classes if c.label == "8")
    assert eight.precision == 0.0 and eight.recall is None


def test_it_bins_confidence_against_agreement(deployment, reviewed):
    bins = {b.low: b for b in report(deployment).headline.calibration}

    assert (bins[0.9].n, bins[0.9].agreed) == (4, 3)  # 0.95, 0.92, 0.97 right; 0.99 wrong
    assert bins[0.9].mean_confidence == pytest.approx((0.95 + 0.92 + 0.97 + 0.99) / 4)
    assert (bins[0.5].n, bins[0.5].agreed) == (1, 0)
    assert (bins[0.8].n, bins[0.8].agreed) == (1, 1)


def test_it_ignores_answers_that_are_not_labels_and_model_decisions(deployment, make):
    make(model_label="3", human="cannot_tell")
    make(model_label="3", human=None, source="model")
    make(model_label="3", human="3")

    h = report(deployment).headline

    assert (h.agreement.agreed, h.agreement.n) == (1, 1)


def test_it_sets_the_bar_with_second_opinions(deployment, make, other_reviewer):
    cases = [make(model_label="3", human=h) for h in ("3", "5", "7", "7")]
    for case, answer in zip(cases, ("3", "5", "1", "7"), strict=True):
        second_opinion(case, other_reviewer, answer)

    humans = report(deployment).humans

    assert (humans.agreement.agreed, humans.agreement.n) == (3, 4)
    assert humans.kappa.kappa == pytest.approx(
        cohen_kappa_score(["3", "5", "7", "7"], ["3", "5", "1", "7"]))


def test_it_groups_by_local_hour_weekday_and_region(deployment, make):
    # 21:30 in Oslo and 21:30 in Tokyo: the same local hour, different UTC hours.
    make(model_label="3", human="5", captured_at=NIGHT)
    make(model_label="3", human="5", region="east",
         captured_at=datetime(2026, 5, 3, 21, 30, tzinfo=TOKYO))
    make(model_label="3", human="3", captured_at=DAY)
    make(model_label="3", human="3", captured_at=DAY, source="model")

    s = report(deployment).slices

    assert (s.by_hour[21].n, s.by_hour[21].agreed) == (2, 0)
    assert (s.by_hour[10].n, s.by_hour[10].agreed, s.by_hour[10].decisions) == (1, 1, 2)
    assert (s.night.n, s.day.n) == (2, 1)
    assert s.by_weekday[4].decisions == 3  # Friday 1 May 2026
    assert s.by_weekday[6].decisions == 1  # Sunday 3 May in Tokyo
    regions = {r.key: r for r in s.by_region}
    assert (regions["north"].decisions, regions["east"].decisions, regions["west"].decisions) \
        == (3, 1, 0)
    assert regions["north"].automation_rate == pytest.approx(1 / 3)


def test_it_follows_agreement_automation_and_inputs_day_by_day(deployment, make):
    make(model_label="3", human="3", captured_at=datetime(2026, 5, 1, 12, tzinfo=OSLO),
         confidence=0.8)
    make(model_label="3", human=None, source="model",
         captured_at=datetime(2026, 5, 2, 12, tzinfo=OSLO), confidence=0.9)
    make(model_label="3", human="5", ood=True,
         captured_at=datetime(2026, 5, 2, 13, tzinfo=OSLO), confidence=0.6)

    days = {d.key: d for d in report(deployment).slices.by_day}

    assert list(days) == [date(2026, 5, 1), date(2026, 5, 2)]
    second = days[date(2026, 5, 2)]
    assert second.automation_rate == 0.5
    assert second.ood_rate == 0.5
    assert second.mean_confidence == pytest.approx(0.75)
    assert (second.n, second.agreed) == (1, 0)


def test_it_shows_what_the_model_sees_before_any_review(deployment, make, model, client_user):
    from inference.models import Prediction
    from reviewplatform.models import Case

    make(model_label="3", human="3", captured_at=datetime(2026, 5, 1, 12, tzinfo=OSLO),
         confidence=0.9)
    for i, (confidence, ood) in enumerate([(0.5, True), (0.7, False)]):
        case = Case.objects.create(  # in the shadow stage's queue, not reviewed yet
            deployment=deployment, region=deployment.regions.get(code="north"),
            external_id=f"q-{i}", image="cases/q.png", image_sha256="0", width=8, height=8,
            captured_at=datetime(2026, 5, 2, 23, 30, tzinfo=OSLO), submitted_by=client_user,
            status=Case.Status.IN_REVIEW)
        Prediction.objects.create(case=case, model_version=model, status="ok", label="1",
                                  confidence=confidence, out_of_domain=ood)

    days = report(deployment).inputs

    assert [d.key for d in days] == [date(2026, 5, 1), date(2026, 5, 2)]
    assert (days[1].predicted, days[1].ood_rate) == (2, 0.5)
    assert days[1].mean_confidence == pytest.approx(0.6)
    assert [d.key for d in report(deployment).slices.by_day] == [date(2026, 5, 1)]
    assert report(deployment, region="east").inputs == []


def test_it_compares_the_champion_with_a_challenger_on_the_same_cases(deployment, make, model):
    from inference.models import Prediction

    challenger = sim_model(deployment, name="challenger", champion=False)
    for m, h, c in [("3", "3", 0.9), ("3", "5", 0.9), ("7", "7", 0.9), ("1", "1", 0.9)]:
        case = make(model_label=m, human=h, confidence=c)
        Prediction.objects.create(case=case, model_version=challenger, status="ok",
                                  label=h if h != "1" else "2", confidence=0.8)
    make(model_label="3", human="3")  # the challenger never saw this one

    [row] = report(deployment).models

    assert row.name == "challenger"
    assert (row.n, row.agreed, row.compared_agreed) == (4, 3, 3)
    assert (row.challenger_only, row.compared_only) == (1, 1)
    assert row.p_value == pytest.approx(1.0)
    # Chosen as the compared model, the challenger sees the champion as the other one.
    [back] = report(deployment, model=str(challenger.pk)).models
    assert back.name == "sim" and back.is_champion


def test_it_weights_audits_by_the_inverse_of_their_sampling_rate(deployment, make, admin_user):
    policy_publish(deployment=deployment, stage="full", rules=[], actor=admin_user,
                   reason="r", audit_rate=0.5)
    for answer in ("3", "3"):
        make(model_label="3", human=None, source="model", audit=answer)
    policy_publish(deployment=deployment, stage="full", rules=[], actor=admin_user,
                   reason="r", audit_rate=0.1)
    for answer in ("3", "5"):
        make(model_label="3", human=None, source="model", audit=answer)

    estimate = report(deployment).audits

    # weights 2, 2, 10, 10: (2 + 2 + 10) / 24
    assert estimate.weighted.estimate == pytest.approx(14 / 24)
    assert estimate.weighted.represented == pytest.approx(24)
    assert (estimate.raw.agreed, estimate.raw.n) == (3, 4)
    assert estimate.automated == 4
    assert estimate.weighted.effective_n < 4


def test_it_flags_a_changed_action_mix_against_the_shadow_stage(deployment, make, admin_user):
    for label in ["3"] * 40 + ["5"] * 40:
        make(model_label=label, human=label, rule="north-day")
    policy_publish(deployment=deployment, stage="limited", actor=admin_user, reason="r",
                   rules=[{"name": "north-day", "regions": ["north"]}])
    for label in ["3"] * 75 + ["5"] * 5:
        make(model_label=label, human=None, source="model", rule="north-day")
    for label in ["3"] * 10 + ["5"] * 10:
        make(model_label=label, human=label, region="east")

    tests = {t.scope: t for t in report(deployment).mix}

    cell = tests["rule north-day in north"]
    assert (cell.shadow_n, cell.since_n) == (80, 80)
    assert cell.significant and cell.p_value < 1e-6
    assert cell.distance == pytest.approx(0.4375)
    assert tests["region north"].significant
    # East has no shadow-stage decisions to compare with: reported, never tested.
    assert tests["region east"].shadow_n == 0 and tests["region east"].p_value is None


def test_it_keeps_an_unchanged_mix_unflagged():
    test = stats.action_mix_test("x", ["a", "b"], [50, 50], [48, 52])
    assert not test.significant and test.p_value > 0.5


def test_it_measures_the_workload(deployment, make):
    for wait in (10, 20, 30, 40, 100):
        make(model_label="3", human="3", wait_s=wait, seconds=30)
    make(model_label="3", human=None, source="model")

    w = report(deployment).workload

    [route] = w.routes
    assert (route.reason, route.tasks, route.done) == ("shadow", 5, 5)
    assert route.minutes == pytest.approx(2.5)
    assert w.by_model == 1
    assert w.wait_p["p50"] == pytest.approx(30, rel=0.05)  # counted in bins 5% wide
    assert 40 < w.wait_p["p90"] <= 100


def test_it_filters_by_region_period_stage_and_reason(deployment, make, admin_user):
    make(model_label="3", human="3", captured_at=datetime(2026, 4, 1, 12, tzinfo=OSLO))
    make(model_label="3", human="5", region="east", reason="low_confidence")
    policy_publish(deployment=deployment, stage="limited", actor=admin_user, reason="r",
                   rules=[])
    make(model_label="7", human="7", reason="out_of_scope")

    def n(**params):
        return report(deployment, **params).headline.agreement.n

    assert n() == 3
    assert n(region="east") == 1
    assert n(**{"from": "2026-05-01"}) == 2
    assert n(to="2026-04-30") == 1
    assert n(stage="limited") == 1
    assert n(reason="low_confidence") == 1


def test_it_refuses_unknown_filters_naming_the_field(deployment):
    for params, field in [({"region": "south"}, "region"), ({"stage": "x"}, "stage"),
                          ({"from": "May"}, "from"), ({"model": "999"}, "model"),
                          ({"to": "9999-12-31"}, "to"), ({"from": "0001-01-01"}, "from"),
                          ({"from": "2026-05-02", "to": "2026-05-01"}, "from")]:
        with pytest.raises(ServiceError) as error:
            filters(deployment, **params)
        assert error.value.field == field


def test_it_builds_the_whole_report_in_a_fixed_number_of_queries(
        deployment, make):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def build(n: int) -> tuple[int, int]:
        for i in range(n):
            make(model_label=str(i % 10), human=str((i * 3) % 10),
                 region=["north", "east"][i % 2])
        with CaptureQueriesContext(connection) as queries:
            built = report(deployment)
        return len(queries), built.headline.agreement.n

    few, n = build(10)
    assert n == 10
    assert few <= 26  # two of them read the drift cells' feature samples (cases, reference)
    assert build(30) == (few, 40)  # whatever the number of decisions
