"""Routing: the pure function from a case, its champion's answer and a policy to an outcome."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reviewplatform.models import ReviewTask
from rollout.routing import IN_SCOPE, CaseFacts, ChampionAnswer, Policy, route

NORTH = CaseFacts(region="north")
EAST = CaseFacts(region="east")
CONFIDENT = ChampionAnswer(label="7", confidence=0.99)
NORTH_RULE = {"name": "north", "regions": ["north"]}


def test_it_sends_every_case_to_humans_in_shadow_stage():
    outcome = route(NORTH, CONFIDENT, Policy(stage="shadow", rules=[NORTH_RULE]))

    assert not outcome.model_decides
    assert outcome.reason == ReviewTask.Reason.SHADOW


def test_it_sends_every_case_to_humans_when_paused():
    for stage_rules in ([NORTH_RULE], []):
        outcome = route(NORTH, CONFIDENT, Policy(stage="paused", rules=stage_rules))

        assert not outcome.model_decides
        assert outcome.reason == ReviewTask.Reason.PAUSED


@pytest.mark.parametrize("stage", ["limited", "expanding", "full"])
def test_it_sends_the_case_to_humans_when_the_model_failed(stage):
    outcome = route(NORTH, ChampionAnswer(label=None), Policy(stage=stage, rules=[NORTH_RULE]))

    assert not outcome.model_decides
    assert outcome.reason == ReviewTask.Reason.MODEL_FAILED


def test_it_sends_a_case_outside_every_rule_to_humans():
    outcome = route(EAST, CONFIDENT, Policy(stage="limited", rules=[NORTH_RULE]))

    assert not outcome.model_decides
    assert outcome.reason == ReviewTask.Reason.OUT_OF_SCOPE
    assert outcome.rule == ""


def test_it_has_an_empty_scope_in_limited_stage_without_rules():
    outcome = route(NORTH, CONFIDENT, Policy(stage="limited", rules=[]))

    assert not outcome.model_decides
    assert outcome.reason == ReviewTask.Reason.OUT_OF_SCOPE


def test_it_lets_the_model_decide_a_confident_case_in_scope():
    rules = [{"name": "west", "regions": ["west"]}, NORTH_RULE]

    outcome = route(NORTH, CONFIDENT, Policy(stage="limited", rules=rules))

    assert outcome.model_decides
    assert outcome.reason == IN_SCOPE
    assert outcome.rule == "north"


def test_it_sends_a_low_confidence_case_in_scope_to_humans():
    outcome = route(NORTH, ChampionAnswer(label="7", confidence=0.89),
                    Policy(stage="limited", rules=[NORTH_RULE], confidence_threshold=0.9))

    assert not outcome.model_decides
    assert outcome.reason == ReviewTask.Reason.LOW_CONFIDENCE
    assert outcome.rule == "north"


def test_it_lets_the_model_decide_at_exactly_the_threshold():
    outcome = route(NORTH, ChampionAnswer(label="7", confidence=0.9),
                    Policy(stage="limited", rules=[NORTH_RULE], confidence_threshold=0.9))

    assert outcome.model_decides


def test_it_uses_a_rule_threshold_stricter_than_the_policy_threshold():
    rule = {**NORTH_RULE, "confidence_threshold": 0.95}

    outcome = route(NORTH, ChampionAnswer(label="7", confidence=0.9),
                    Policy(stage="limited", rules=[rule], confidence_threshold=0.5))

    assert not outcome.model_decides
    assert outcome.reason == ReviewTask.Reason.LOW_CONFIDENCE


def test_it_uses_a_rule_threshold_looser_than_the_policy_threshold():
    rule = {**NORTH_RULE, "confidence_threshold": 0.6}

    outcome = route(NORTH, ChampionAnswer(label="7", confidence=0.7),
                    Policy(stage="limited", rules=[rule], confidence_threshold=0.9))

    assert outcome.model_decides
    assert outcome.reason == IN_SCOPE


def test_it_sends_an_out_of_domain_case_to_humans_however_confident():
    outcome = route(NORTH, ChampionAnswer(label="7", confidence=1.0, out_of_domain=True),
                    Policy(stage="limited", rules=[NORTH_RULE]))

    assert not outcome.model_decides
    assert outcome.reason == ReviewTask.Reason.OUT_OF_DOMAIN
    assert outcome.rule == "north"


def test_it_lets_a_rule_without_regions_cover_every_region():
    outcome = route(EAST, CONFIDENT, Policy(stage="expanding", rules=[{"name": "everywhere"}]))

    assert outcome.model_decides
    assert outcome.rule == "everywhere"


regions = st.sampled_from(["north", "east", "west", "south", ""])
answers = st.builds(
    ChampionAnswer,
    label=st.none() | st.sampled_from([str(d) for d in range(10)]),
    confidence=st.none() | st.floats(min_value=0, max_value=1),
    out_of_domain=st.booleans(),
)
rules = st.lists(st.fixed_dictionaries(
    {"name": st.text(max_size=10)},
    optional={"regions": st.lists(regions, max_size=3),
              "confidence_threshold": st.floats(min_value=0, max_value=1)},
), max_size=4)
thresholds = st.floats(min_value=0, max_value=1)


@given(region=regions, champion=answers, policy_rules=rules, threshold=thresholds)
def test_it_never_lets_the_model_decide_in_shadow_stage(region, champion, policy_rules,
                                                          threshold):
    outcome = route(CaseFacts(region=region), champion,
                    Policy(stage="shadow", rules=policy_rules, confidence_threshold=threshold))

    assert not outcome.model_decides
    assert outcome.reason == ReviewTask.Reason.SHADOW


@given(region=regions, champion=answers, policy_rules=rules, threshold=thresholds)
def test_it_never_lets_the_model_decide_when_paused(region, champion, policy_rules, threshold):
    outcome = route(CaseFacts(region=region), champion,
                    Policy(stage="paused", rules=policy_rules, confidence_threshold=threshold))

    assert not outcome.model_decides


@given(region=regions, policy_rules=rules, threshold=thresholds, data=st.data())
def test_it_lets_a_confident_in_domain_champion_decide_in_full_stage(region, policy_rules,
                                                                     threshold, data):
    confidence = data.draw(st.floats(min_value=threshold, max_value=1))
    champion = ChampionAnswer(label="3", confidence=confidence, out_of_domain=False)

    outcome = route(CaseFacts(region=region), champion,
                    Policy(stage="full", rules=policy_rules, confidence_threshold=threshold))

    assert outcome.model_decides
    assert outcome.reason == IN_SCOPE


@given(region=regions, champion=answers, policy_rules=rules, threshold=thresholds,
       stage=st.sampled_from(["limited", "expanding", "full"]))
def test_it_lets_the_model_decide_only_with_a_confident_in_domain_label(
        region, champion, policy_rules, threshold, stage):
    outcome = route(CaseFacts(region=region), champion,
                    Policy(stage=stage, rules=policy_rules, confidence_threshold=threshold))

    if outcome.model_decides:
        assert champion.label is not None
        assert champion.confidence is not None
        assert not champion.out_of_domain


def test_it_audits_a_cell_at_the_rate_the_guardrail_set_for_it():
    policy = Policy(stage="full", audit_rate=0.0, audit_rates={("full", "north"): 1.0})
    cases = [CaseFacts(region=region, case_key=str(key))
             for region in ("north", "east") for key in range(200)]

    outcomes = [route(case, CONFIDENT, policy) for case in cases]

    north = [o for c, o in zip(cases, outcomes, strict=True) if c.region == "north"]
    east = [o for c, o in zip(cases, outcomes, strict=True) if c.region == "east"]
    assert all(o.model_decides and o.audit and o.audit_rate == 1.0 for o in north)
    # East has no rate of its own: the policy's, here none.
    assert all(o.model_decides and not o.audit and o.audit_rate == 0.0 for o in east)


def test_it_draws_audits_sticky_and_nested_as_the_rate_rises():
    keys = [str(key) for key in range(2000)]

    def audited(rate: float) -> set[str]:
        policy = Policy(stage="full", audit_rates={("full", "north"): rate})
        return {k for k in keys
                if route(CaseFacts(region="north", case_key=k), CONFIDENT, policy).audit}

    low, high = audited(0.05), audited(0.2)
    assert low < high  # a case audited at the lower rate is audited at the higher one too
    assert 60 <= len(low) <= 140 and 320 <= len(high) <= 480
