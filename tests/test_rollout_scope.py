"""Scope rules: time windows in the region's zone, bucketing, validation, widening, routing."""

from __future__ import annotations

import functools
import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reviewplatform.models import ReviewTask
from rollout.routing import IN_SCOPE, ChampionAnswer, Policy, case_facts, route
from rollout.scope import (
    ScopeError,
    audit_selected,
    bucket,
    change_in_words,
    pause_fates,
    pauses_carry,
    policy_describe,
    policy_diff,
    rule_compile,
    rules_validate,
    widening,
    window_contains,
)

REGIONS = ["north", "east", "west"]
CONFIDENT = ChampionAnswer(label="7", confidence=0.99)
FAR_ZONES = ["Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Kathmandu", "Australia/Lord_Howe",
             "America/Los_Angeles", "Europe/Oslo", "Asia/Tokyo", "America/St_Johns", "UTC"]
instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31),
                        timezones=st.just(UTC))
clocks = st.integers(min_value=0, max_value=24 * 60 - 1)


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def matches(rule: dict, *, region: str = "north", at: datetime, tz: str = "Europe/Oslo",
            key: str = "1") -> bool:
    facts = case_facts(region=region, captured_at=at, timezone=tz, case_key=key)
    return rule_compile(rule, group="digits").matches(facts.region, facts.local, facts.case_key)


# --- bucketing -----------------------------------------------------------------------------

def test_it_buckets_like_unleash():
    assert bucket("gr1", "123") == 73
    assert bucket("groupX", "999") == 25


@given(group=st.text(max_size=20), key=st.text(max_size=20))
def test_it_puts_every_case_in_a_bucket_from_1_to_100_that_never_changes(group, key):
    first = bucket(group, key)
    assert 1 <= first <= 100
    assert bucket(group, key) == first


@given(low=st.integers(0, 100), high=st.integers(0, 100), key=st.integers(1, 10**9))
def test_it_only_adds_cases_when_the_percentage_rises(low, high, key):
    low, high = min(low, high), max(low, high)
    at = datetime(2026, 5, 1, 12, tzinfo=UTC)
    if matches({"name": "r", "percent": low}, at=at, key=str(key)):
        assert matches({"name": "r", "percent": high}, at=at, key=str(key))


def test_it_selects_close_to_the_percentage_of_cases():
    at = datetime(2026, 5, 1, 12, tzinfo=UTC)
    chosen = sum(matches({"name": "r", "percent": 25}, at=at, key=str(k)) for k in range(4000))
    assert 900 < chosen < 1100
    assert not any(matches({"name": "r", "percent": 0}, at=at, key=str(k)) for k in range(200))
    assert all(matches({"name": "r", "percent": 100}, at=at, key=str(k)) for k in range(200))


def test_it_draws_audits_independently_of_the_percentage():
    audited = [k for k in range(4000) if audit_selected("digits", str(k), 0.05)]
    assert 150 < len(audited) < 250
    in_low_buckets = sum(bucket("digits", str(k)) <= 50 for k in audited)
    assert 0.35 < in_low_buckets / len(audited) < 0.65


# --- time windows --------------------------------------------------------------------------

@given(start=clocks, end=clocks, t=clocks)
def test_it_puts_a_time_in_exactly_one_of_a_window_and_its_complement(start, end, t):
    if start == end:
        return
    assert window_contains(start, end, t) != window_contains(end, start, t)


def test_it_handles_a_window_across_midnight():
    rule = {"name": "night", "windows": [{"start": "22:00", "end": "06:00"}]}
    oslo = ZoneInfo("Europe/Oslo")
    assert matches(rule, at=datetime(2026, 5, 1, 22, 0, tzinfo=oslo))
    assert matches(rule, at=datetime(2026, 5, 2, 5, 59, 59, tzinfo=oslo))
    assert not matches(rule, at=datetime(2026, 5, 2, 6, 0, tzinfo=oslo))
    assert not matches(rule, at=datetime(2026, 5, 1, 21, 59, tzinfo=oslo))


@settings(max_examples=300)
@given(at=instants, tz=st.sampled_from(FAR_ZONES), start=clocks, end=clocks)
def test_it_reads_windows_in_the_regions_wall_clock_time(at, tz, start, end):
    """Oracle: the local wall-clock time from the tz database, compared by hand."""
    if start == end:
        return
    rule = {"name": "w", "windows": [{"start": hhmm(start), "end": hhmm(end)}]}
    local = at.astimezone(ZoneInfo(tz))
    minute = local.hour * 60 + local.minute
    inside = (start <= minute < end) if start < end else (minute >= start or minute < end)
    assert matches(rule, at=at, tz=tz) == inside


def test_it_follows_the_clock_on_the_day_daylight_saving_starts():
    rule = {"name": "day", "windows": [{"start": "08:00", "end": "18:00"}]}
    # 2026-03-08: Los Angeles moves from UTC-8 to UTC-7 at 02:00.
    at_eight_local = datetime(2026, 3, 8, 15, 0, tzinfo=UTC)  # 08:00 PDT, 07:00 in PST
    assert matches(rule, region="west", at=at_eight_local, tz="America/Los_Angeles")
    assert not matches(rule, region="west", at=at_eight_local - timedelta(seconds=1),
                       tz="America/Los_Angeles")
    # The skipped hour: 02:30 does not exist; a 02:00-03:00 window is empty that night.
    gap = {"name": "gap", "windows": [{"start": "02:00", "end": "03:00"}]}
    night = [datetime(2026, 3, 8, 9, 0, tzinfo=UTC) + timedelta(minutes=m) for m in range(180)]
    assert not any(matches(gap, at=t, tz="America/Los_Angeles") for t in night)


def test_it_counts_the_repeated_hour_twice_on_the_day_daylight_saving_ends():
    gap = {"name": "gap", "windows": [{"start": "01:00", "end": "02:00"}]}
    # 2026-11-01: Los Angeles repeats 01:00-02:00 (PDT, then PST): two real hours inside.
    night = [datetime(2026, 11, 1, 7, 0, tzinfo=UTC) + timedelta(minutes=m) for m in range(240)]
    assert sum(matches(gap, at=t, tz="America/Los_Angeles") for t in night) == 120


# The oracle of the DST tests: a minute-by-minute table of the wall clock on each day a zone
# changes its clock, read from the tz database one UTC minute at a time
# (`datetime.fromtimestamp`), never through the conversion the rules use. Which days those are
# comes from each zone's civil rule, written out by hand; the table is checked against it.


def _nth_sunday(year: int, month: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(6 - first.weekday()) % 7 + 7 * (n - 1))


def _last_sunday(year: int, month: int) -> date:
    last = date(year, month + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - 6) % 7)


# zone: (spring-forward day, fall-back day, local wall time of each change, minutes shifted)
DST_RULES = {
    # Since 2007: second Sunday of March at 02:00 PST, first Sunday of November at 02:00 PDT.
    "America/Los_Angeles": (lambda y: _nth_sunday(y, 3, 2), lambda y: _nth_sunday(y, 11, 1),
                            (2 * 60, 2 * 60), 60),
    # The EU: last Sunday of March and of October, at 01:00 UTC (02:00 CET, 03:00 CEST).
    "Europe/Oslo": (lambda y: _last_sunday(y, 3), lambda y: _last_sunday(y, 10),
                    (2 * 60, 3 * 60), 60),
    # Half an hour: first Sunday of October at 02:00 forward, first Sunday of April at 02:00 back.
    "Australia/Lord_Howe": (lambda y: _nth_sunday(y, 10, 1), lambda y: _nth_sunday(y, 4, 1),
                            (2 * 60, 2 * 60), 30),
}
DST_YEARS = range(2020, 2036)


@functools.cache
def wall_clock_table(zone: str, day: date) -> tuple[tuple[datetime, datetime], ...]:
    """(UTC minute, local wall-clock minute) for every UTC minute from noon UTC the day before
    `day` to noon UTC the day after: the whole of `day` in any zone."""
    tz = ZoneInfo(zone)
    start = int(datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp()) - 86_400
    return tuple((datetime.fromtimestamp(ts, UTC),
                  datetime.fromtimestamp(ts, tz).replace(tzinfo=None))
                 for ts in range(start, start + 2 * 86_400, 60))


def _in_window(start: int, end: int, minute: int) -> bool:
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


transition_days = st.builds(
    lambda zone, year, spring: (zone, DST_RULES[zone][0 if spring else 1](year), spring),
    st.sampled_from(sorted(DST_RULES)), st.sampled_from(DST_YEARS), st.booleans())


def _change_index(table: tuple[tuple[datetime, datetime], ...]) -> int:
    return next(i for i in range(1, len(table))
                if table[i][1] - table[i - 1][1] != timedelta(minutes=1))


@st.composite
def transition_minutes(draw) -> tuple[str, date, int]:
    """A zone, its transition day and a row of its table: within three hours of the change
    half of the time."""
    zone, when, _ = draw(transition_days)
    table = wall_clock_table(zone, when)
    change = _change_index(table)
    row = draw(st.integers(0, len(table) - 1)
               | st.integers(max(0, change - 180), min(len(table) - 1, change + 180)))
    return zone, when, row


# Window edges at the changes' wall times half of the time.
edges = st.one_of(clocks, st.integers(60, 4 * 60), st.sampled_from([90, 120, 150, 180]))
windows = st.tuples(edges, edges).filter(lambda window: window[0] != window[1])


@settings(max_examples=60, deadline=None)
@given(day=transition_days)
def test_the_wall_clock_table_changes_once_on_each_transition_day(day):
    zone, when, spring = day
    _, _, (forward_at, back_at), shift = DST_RULES[zone]
    table = wall_clock_table(zone, when)
    jumps = [(before, after) for (_, before), (_, after) in itertools.pairwise(table)
             if after - before != timedelta(minutes=1)]
    assert len(jumps) == 1, jumps
    before, after = jumps[0]
    step = timedelta(minutes=1 + shift) if spring else timedelta(minutes=1 - shift)
    assert after - before == step
    changed_at = forward_at if spring else back_at
    assert after.date() == when
    assert (before + timedelta(minutes=1)).time() == time(changed_at // 60, changed_at % 60)


@settings(max_examples=400, deadline=None)
@given(minute=transition_minutes(), second=st.integers(0, 59), window=windows,
       dated=st.booleans())
def test_it_reads_windows_by_the_wall_clock_on_daylight_saving_days(minute, second, window,
                                                                     dated):
    """Oracle: the wall-clock table; a rule may also name the transition day's date."""
    zone, when, row = minute
    utc_minute, local = wall_clock_table(zone, when)[row]
    start, end = window
    rule = {"name": "w", "windows": [{"start": hhmm(start), "end": hhmm(end)}]}
    if dated:
        rule["dates"] = {"from": when.isoformat(), "until": when.isoformat()}
    expected = (_in_window(start, end, local.hour * 60 + local.minute)
                and (not dated or local.date() == when))
    at = utc_minute + timedelta(seconds=second)
    assert matches(rule, at=at, tz=zone) == expected


@pytest.mark.parametrize("zone", sorted(DST_RULES))
def test_it_counts_the_minutes_of_a_window_by_the_wall_clock_of_the_whole_day(zone):
    """Over a spring and a fall day, the UTC minutes in scope are those the table puts inside."""
    rule = {"name": "w", "windows": [{"start": "01:30", "end": "03:30"}]}
    for pick in DST_RULES[zone][:2]:
        table = wall_clock_table(zone, pick(2026))
        inside = [utc for utc, local in table
                  if _in_window(90, 210, local.hour * 60 + local.minute)]
        assert [utc for utc, _ in table if matches(rule, at=utc, tz=zone)] == inside


def test_it_uses_the_local_weekday_and_date():
    # Friday 23:30 in Tokyo is still Friday 14:30 UTC.
    at = datetime(2026, 5, 1, 14, 30, tzinfo=UTC)
    assert matches({"name": "r", "weekdays": ["fri"]}, region="east", at=at, tz="Asia/Tokyo")
    assert not matches({"name": "r", "weekdays": ["sat"]}, region="east", at=at,
                       tz="Asia/Tokyo")
    later = at + timedelta(hours=1)  # Saturday 00:30 in Tokyo
    assert matches({"name": "r", "weekdays": ["sat"]}, region="east", at=later, tz="Asia/Tokyo")
    dated = {"name": "r", "dates": {"from": "2026-05-02", "until": "2026-05-02"}}
    assert not matches(dated, region="east", at=at, tz="Asia/Tokyo")
    assert matches(dated, region="east", at=later, tz="Asia/Tokyo")


def test_it_ands_conditions_within_a_rule():
    rule = {"name": "r", "regions": ["north"], "windows": [{"start": "08:00", "end": "18:00"}]}
    noon = datetime(2026, 5, 1, 12, tzinfo=ZoneInfo("Europe/Oslo"))
    assert matches(rule, at=noon)
    assert not matches(rule, region="east", at=noon)
    assert not matches(rule, at=noon + timedelta(hours=8))
    assert not matches({"name": "r", "regions_not": ["north"]}, at=noon)


# --- validation ----------------------------------------------------------------------------

@pytest.mark.parametrize(("rule", "field"), [
    ({"name": "r", "regions": ["south"]}, "rules[0].regions"),
    ({"name": "r", "regions_not": ["moon"]}, "rules[0].regions_not"),
    ({"name": "r", "windows": [{"start": "08:00", "end": "08:00"}]}, "rules[0].windows[0]"),
    ({"name": "r", "windows": [{"start": "25:00", "end": "08:00"}]}, "rules[0].windows[0]"),
    ({"name": "r", "windows": []}, "rules[0].windows"),
    ({"name": "r", "percent": 101}, "rules[0].percent"),
    ({"name": "r", "percent": -1}, "rules[0].percent"),
    ({"name": "r", "percent": "50"}, "rules[0].percent"),
    ({"name": "r", "confidence_threshold": 1.5}, "rules[0].confidence_threshold"),
    ({"name": "r", "confidence_threshold": -0.1}, "rules[0].confidence_threshold"),
    ({"name": "r", "weekdays": ["funday"]}, "rules[0].weekdays"),
    ({"name": "r", "dates": {"from": "2026-06-01", "until": "2026-05-01"}}, "rules[0].dates"),
    ({"name": "r", "dates": {"from": "yesterday"}}, "rules[0].dates.from"),
    ({"name": "r", "colour": "red"}, "rules[0].colour"),
    ({"name": 7}, "rules[0].name"),
    ({"name": "x" * 101}, "rules[0].name"),
    ("north", "rules[0]"),
])
def test_it_refuses_an_invalid_rule_naming_the_field(rule, field):
    with pytest.raises(ScopeError) as error:
        rules_validate([rule], region_codes=REGIONS)
    assert error.value.field == field


def test_it_refuses_two_rules_with_one_name():
    with pytest.raises(ScopeError) as error:
        rules_validate([{"name": "a"}, {"name": "a"}], region_codes=REGIONS)
    assert error.value.field == "rules[1].name"


def test_it_names_a_rule_left_without_a_name_from_its_conditions():
    rules = rules_validate([
        {"regions": ["north"], "windows": [{"start": "08:00", "end": "18:00"}], "percent": 25},
        {"name": "  ", "regions": ["west", "east"], "regions_not": ["north"],
         "weekdays": ["mon", "tue", "wed", "thu", "fri"], "confidence_threshold": 0.95},
        {"weekdays": ["sat", "sun"], "dates": {"from": "2026-05-01"}},
        {"weekdays": ["mon", "wed", "fri"], "percent": 12.5},
        {},
    ], region_codes=REGIONS)
    assert [r["name"] for r in rules] == [
        "north-0800-1800-25pct", "east-west-not-north-mon-fri-conf0.95",
        "sat-sun-from-2026-05-01", "mon-wed-fri-12.5pct", "every-case"]
    assert list(rules[0]) == ["name", "regions", "windows", "percent"]  # the name comes first


def test_it_makes_a_generated_name_unique_and_keeps_the_names_given():
    north = {"regions": ["north"]}
    rules = rules_validate([north, {"name": "north", "percent": 5}, north, dict(north)],
                           region_codes=REGIONS)
    assert [r["name"] for r in rules] == ["north-2", "north", "north-3", "north-4"]


def test_it_accepts_a_full_rule_in_canonical_form():
    rules = rules_validate([{
        "name": "north-night", "regions": ["north", "east"], "regions_not": ["west"],
        "windows": [{"start": "22:00", "end": "06:00"}], "weekdays": ["fri", "mon"],
        "dates": {"until": "2026-12-31", "from": "2026-05-01"}, "percent": 25,
        "confidence_threshold": 0.95}], region_codes=REGIONS)
    assert rules[0]["regions"] == ["east", "north"]
    assert rules[0]["weekdays"] == ["mon", "fri"]


# --- plain words, widening and diffs -------------------------------------------------------

def spec(stage="limited", rules=(), threshold=0.9, cells=()):
    return {"stage": stage, "rules": list(rules), "confidence_threshold": threshold,
            "audit_rate": 0.05, "paused_cells": [list(c) for c in cells], "guardrails": {}}


def test_it_describes_the_scope_in_plain_words():
    rule = {"name": "day", "regions": ["north", "east"],
            "windows": [{"start": "08:00", "end": "18:00"}], "percent": 25}
    (line, audit) = policy_describe(spec(rules=[rule]))
    assert line == ("The model decides cases from regions north and east captured 08:00-18:00 "
                    "local time, 25% of them, when its confidence is at least 0.90 (rule day).")
    assert "5% of the model's decisions are audited" in audit


@pytest.mark.parametrize(("old", "new", "widens"), [
    (spec("shadow"), spec(rules=[{"name": "n", "regions": ["north"]}]), True),
    (spec(rules=[{"name": "n", "regions": ["north"]}]),
     spec(rules=[{"name": "n", "regions": ["north", "east"]}]), True),
    (spec(rules=[{"name": "n", "regions": ["north", "east"]}]),
     spec(rules=[{"name": "n", "regions": ["north"]}]), False),
    (spec(rules=[{"name": "n", "percent": 10}]), spec(rules=[{"name": "n", "percent": 25}]), True),
    (spec(rules=[{"name": "n", "percent": 25}]), spec(rules=[{"name": "n", "percent": 10}]),
     False),
    (spec(rules=[{"name": "n", "windows": [{"start": "08:00", "end": "18:00"}]}]),
     spec(rules=[{"name": "n", "windows": [{"start": "07:00", "end": "18:00"}]}]), True),
    (spec(rules=[{"name": "n", "windows": [{"start": "22:00", "end": "06:00"}]}]),
     spec(rules=[{"name": "n", "windows": [{"start": "23:00", "end": "05:00"}]}]), False),
    (spec(rules=[{"name": "n"}], threshold=0.9), spec(rules=[{"name": "n"}], threshold=0.8),
     True),
    (spec("full"), spec("full", threshold=0.95), False),
    (spec(rules=[{"name": "n"}], cells=[("n", "east")]), spec(rules=[{"name": "n"}]), True),
    (spec(rules=[{"name": "n"}]), spec("paused", rules=[{"name": "n"}]), False),
])
def test_it_tells_a_widening_from_a_narrowing(old, new, widens):
    assert bool(widening(old, new, all_regions=REGIONS)) == widens


def test_it_writes_a_readable_diff():
    old = spec(rules=[{"name": "n", "regions": ["north"], "percent": 10}])
    new = spec("expanding", rules=[{"name": "n", "regions": ["north"], "percent": 25},
                                   {"name": "e", "regions": ["east"]}])
    assert policy_diff(old, new) == [
        "stage: limited → expanding", "rule n: percent 10 → 25",
        "rule e added: {name: e, regions: [east]}"]


def test_it_says_what_a_change_does_to_the_cases():
    day = {"name": "day", "regions": ["north"], "windows": [{"start": "08:00", "end": "18:00"}]}
    east = {"name": "e", "regions": ["east"], "percent": 25}
    limited = spec(rules=[day, east])
    assert change_in_words(limited, spec(rules=[east])) == [
        "north 08:00-18:00 goes back to reviewers (rule day)."]
    assert change_in_words(spec("shadow"), spec(rules=[day])) == [
        "The model starts deciding cases from region north captured 08:00-18:00 local time, "
        "when its confidence is at least 0.90 (rule day)."]
    assert change_in_words(limited, spec(rules=[day, {**east, "percent": 50}])) == [
        "Rule e changes from east, 25% to cases from region east, 50% of them, when its "
        "confidence is at least 0.90."]
    assert change_in_words(limited, spec(rules=[day, east], cells=[("day", "north")])) == [
        "Region north under rule day goes back to reviewers (paused)."]
    assert change_in_words(spec(rules=[day], cells=[("day", "north")]), spec(rules=[day])) == [
        "The model decides again in region north under rule day."]
    assert change_in_words(limited, spec("paused", rules=[day, east])) == [
        "Automation stops: every new case goes to reviewers.",
        "north 08:00-18:00 goes back to reviewers (rule day).",
        "east, 25% goes back to reviewers (rule e)."]
    assert change_in_words(spec("full"), spec("full", threshold=0.95)) == [
        "Confidence threshold 0.9 → 0.95."]
    assert change_in_words(limited, limited) == ["Nothing changes for the cases."]


# --- routing table -------------------------------------------------------------------------

rules_st = st.lists(st.fixed_dictionaries(
    {"name": st.sampled_from(["a", "b", "c"])},
    optional={"regions": st.lists(st.sampled_from(REGIONS), min_size=1, max_size=3),
              "percent": st.integers(0, 100),
              "windows": st.lists(st.tuples(clocks, clocks).filter(lambda w: w[0] != w[1])
                                  .map(lambda w: {"start": hhmm(w[0]), "end": hhmm(w[1])}),
                                  min_size=1, max_size=2),
              "confidence_threshold": st.floats(0, 1)}), max_size=3)
answers = st.builds(ChampionAnswer,
                    label=st.none() | st.sampled_from(["3", "7"]),
                    confidence=st.none() | st.floats(0, 1), out_of_domain=st.booleans())


@settings(max_examples=300)
@given(rules=rules_st, answer=answers, at=instants, region=st.sampled_from(REGIONS),
       key=st.integers(1, 10**6), stage=st.sampled_from(["limited", "expanding", "full"]),
       threshold=st.floats(0, 1), audit=st.floats(0, 1))
def test_it_routes_by_the_table(rules, answer, at, region, key, stage, threshold, audit):
    facts = case_facts(region=region, captured_at=at, timezone="Asia/Tokyo", case_key=str(key))
    policy = Policy(stage=stage, rules=rules, confidence_threshold=threshold, audit_rate=audit,
                    group_id="digits")
    outcome = route(facts, answer, policy)
    matched = [r for r in policy.compiled if r.matches(region, facts.local, str(key))]
    if answer.label is None:
        assert outcome.reason == ReviewTask.Reason.MODEL_FAILED
    elif stage != "full" and not matched:
        assert outcome.reason == ReviewTask.Reason.OUT_OF_SCOPE
    elif answer.out_of_domain:
        assert outcome.reason == ReviewTask.Reason.OUT_OF_DOMAIN
    else:
        rule = matched[0] if stage != "full" else None
        limit = (rule.confidence_threshold if rule and rule.confidence_threshold is not None
                 else threshold)
        if answer.confidence is None or answer.confidence < limit:
            assert outcome.reason == ReviewTask.Reason.LOW_CONFIDENCE
        else:
            assert outcome.model_decides
            assert outcome.audit == audit_selected("digits", str(key), audit)
    assert outcome.model_decides == (outcome.reason in (IN_SCOPE, ReviewTask.Reason.AUDIT))
    # The same case under the shadow stage: never decided, names the rule it would use.
    shadow = route(facts, answer, Policy(stage="shadow", rules=rules,
                                         confidence_threshold=threshold, group_id="digits"))
    assert not shadow.model_decides
    if stage != "full":
        assert shadow.rule == (outcome.rule if outcome.model_decides else "")


def test_it_skips_a_cell_a_guardrail_paused():
    rules = [{"name": "all"}]
    policy = Policy(stage="limited", rules=rules, paused_cells=[("all", "east")],
                    group_id="digits")
    at = datetime(2026, 5, 1, 12, tzinfo=UTC)
    east = route(case_facts(region="east", captured_at=at, timezone="Asia/Tokyo", case_key="1"),
                 CONFIDENT, policy)
    north = route(case_facts(region="north", captured_at=at, timezone="Europe/Oslo",
                             case_key="1"), CONFIDENT, policy)
    assert (east.model_decides, east.reason, east.rule) == (False, ReviewTask.Reason.PAUSED, "all")
    assert north.model_decides


# --- guardrail pauses across a change of scope ---------------------------------------------

DAYTIME = {"name": "daytime", "regions": ["north", "west"],
           "windows": [{"start": "08:00", "end": "18:00"}]}
PAUSED_WEST = spec(rules=[DAYTIME], cells=[("daytime", "west")])


def carried(old, new, requested=None):
    """`new` with the pauses a publish would give it after `old`."""
    return {**new, "paused_cells": pauses_carry(old, new, requested)}


def test_a_renamed_rule_keeps_the_pause_and_says_so():
    new = carried(PAUSED_WEST, spec(rules=[{**DAYTIME, "name": "daytime2"}]))

    assert new["paused_cells"] == [["daytime2", "west"]]
    assert change_in_words(PAUSED_WEST, new) == [
        "The model starts deciding cases from regions north and west captured 08:00-18:00 "
        "local time, when its confidence is at least 0.90 (rule daytime2).",
        "north and west 08:00-18:00 goes back to reviewers (rule daytime).",
        "Region west stays with reviewers: its guardrail pause moves from rule daytime to "
        "rule daytime2."]
    assert policy_diff(PAUSED_WEST, new)[-1] == (
        "pause moved: region west from rule daytime to rule daytime2")
    assert policy_describe(new)[-1] == "Paused by a guardrail: region west under rule daytime2."
    assert not [w for w in widening(PAUSED_WEST, new, all_regions=REGIONS) if "pause" in w]


def test_the_full_stage_keeps_the_paused_region_with_reviewers():
    new = carried(PAUSED_WEST, spec("full"))

    assert new["paused_cells"] == [["full", "west"]]
    assert change_in_words(PAUSED_WEST, new) == [
        "The model decides every case when its confidence is at least 0.90.",
        "Region west stays with reviewers: its guardrail pause moves from rule daytime to the "
        "full stage (rule full)."]
    assert policy_diff(PAUSED_WEST, new) == [
        "stage: limited → full", "rule daytime removed",
        "pause moved: region west from rule daytime to rule full"]
    assert widening(PAUSED_WEST, new, all_regions=REGIONS) == ["stage limited → full"]
    west = case_facts(region="west", captured_at=datetime(2026, 5, 4, 20, tzinfo=UTC),
                      timezone="America/Los_Angeles", case_key="1")
    outcome = route(west, CONFIDENT, Policy(stage="full", paused_cells=[("full", "west")]))
    assert (outcome.model_decides, outcome.reason) == (False, ReviewTask.Reason.PAUSED)


def test_leaving_the_full_stage_pauses_the_region_under_every_rule_that_takes_it():
    old = spec("full", cells=[("full", "west")])
    new = carried(old, spec(rules=[{"name": "a", "regions": ["west"]}, {"name": "b"},
                                   {"name": "c", "regions": ["north"]}]))

    assert new["paused_cells"] == [["a", "west"], ["b", "west"]]
    assert ("Region west stays with reviewers: its guardrail pause moves from rule full to "
            "rules a and b.") in change_in_words(old, new)


def test_narrowing_a_rule_away_from_the_region_ends_its_pause_and_the_summary_drops_it():
    new = carried(PAUSED_WEST, spec(rules=[{**DAYTIME, "regions": ["north"]}]))

    assert new["paused_cells"] == []
    assert not [line for line in policy_describe(new) if "Paused" in line]
    assert change_in_words(PAUSED_WEST, new) == [
        "Rule daytime changes from north and west 08:00-18:00 to cases from region north "
        "captured 08:00-18:00 local time, when its confidence is at least 0.90.",
        "The guardrail pause of region west under rule daytime ends: rule daytime no longer "
        "takes cases from region west."]
    assert policy_diff(PAUSED_WEST, new)[-1] == (
        "pause ended with its cell: region west under rule daytime")
    assert widening(PAUSED_WEST, new, all_regions=REGIONS) == []
    # A version stored with such a pause does not describe it as in force.
    stale = spec(rules=[{**DAYTIME, "regions": ["north"]}], cells=[("daytime", "west")])
    assert not [line for line in policy_describe(stale) if "Paused" in line]


def test_a_new_rule_reaching_the_region_takes_the_pause_of_the_rule_that_left_it():
    new = carried(PAUSED_WEST, spec(rules=[{**DAYTIME, "regions": ["north"]},
                                           {"name": "west-all", "regions": ["west"]}]))

    assert new["paused_cells"] == [["west-all", "west"]]


def test_the_kill_switch_and_shadow_keep_every_pause_for_when_automation_returns():
    full = spec("full", cells=[("full", "west")])
    paused = carried(full, spec("paused"))
    assert paused["paused_cells"] == [["full", "west"]]
    assert change_in_words(full, paused) == [
        "Automation stops: every new case goes to reviewers."]
    back = carried(paused, spec("full"))
    assert back["paused_cells"] == [["full", "west"]]
    assert change_in_words(paused, back) == [
        "The model decides every case when its confidence is at least 0.90."]


def test_only_a_pause_left_out_on_purpose_is_lifted():
    new = carried(PAUSED_WEST, spec(rules=[DAYTIME]), requested=[])

    assert new["paused_cells"] == []
    assert change_in_words(PAUSED_WEST, new) == [
        "The model decides again in region west under rule daytime."]
    assert policy_diff(PAUSED_WEST, new) == ["resumed: region west under rule daytime"]
    assert widening(PAUSED_WEST, new, all_regions=REGIONS) == [
        "guardrail pause lifted: region west under rule daytime"]
    # A rollback to a version without the pause, after a rename: lifted, and said so.
    renamed = carried(PAUSED_WEST, spec(rules=[{**DAYTIME, "name": "daytime2"}]))
    (fate,) = pause_fates(renamed, spec(rules=[DAYTIME]))
    assert (fate.fate, fate.to) == ("lifted", ("daytime",))
    assert change_in_words(renamed, spec(rules=[DAYTIME]))[-1] == (
        "The model decides again in region west under rule daytime: the guardrail pause "
        "under rule daytime2 is lifted.")


def test_a_new_pause_must_name_a_cell_of_the_policy():
    with pytest.raises(ScopeError) as error:
        pauses_carry(PAUSED_WEST, spec(rules=[DAYTIME]), [["daytime", "west"], ["night", "west"]])
    assert error.value.field == "paused_cells[1]"
    assert "region 'west' under rule 'night' is not part of the proposed policy" in (
        error.value.message)
    assert pauses_carry(PAUSED_WEST, spec(rules=[DAYTIME]),
                        [["daytime", "west"], ["daytime", "north"]]) == [
        ["daytime", "west"], ["daytime", "north"]]


named_rules = st.lists(st.fixed_dictionaries(
    {}, optional={"regions": st.lists(st.sampled_from(REGIONS), min_size=1, max_size=3),
                  "windows": st.lists(st.tuples(clocks, clocks).filter(lambda w: w[0] != w[1])
                                      .map(lambda w: {"start": hhmm(w[0]), "end": hhmm(w[1])}),
                                      min_size=1, max_size=1),
                  "percent": st.integers(0, 100)}),
    min_size=1, max_size=3).map(
        lambda rules: [{**r, "name": f"r{i}"} for i, r in enumerate(rules)])


@settings(max_examples=200)
@given(rules=named_rules, data=st.data())
def test_renaming_a_rule_routes_every_case_as_before(rules, data):
    """Whatever the rules and their pauses, renaming one rule sends each case the same way."""
    cells = data.draw(st.lists(st.tuples(st.sampled_from([r["name"] for r in rules]),
                                         st.sampled_from(REGIONS)), unique=True))
    old = spec(rules=rules, cells=[c for c in cells
                                   if c[0] in [r["name"] for r in rules
                                               if not r.get("regions") or c[1] in r["regions"]]])
    which = data.draw(st.integers(0, len(rules) - 1))
    new = carried(old, spec(rules=[{**r, "name": "renamed"} if i == which else r
                                   for i, r in enumerate(rules)]))
    before, after = (Policy(stage="limited", rules=s["rules"], group_id="digits",
                            paused_cells=[tuple(c) for c in s["paused_cells"]])
                     for s in (old, new))
    at, region = data.draw(instants), data.draw(st.sampled_from(REGIONS))
    facts = case_facts(region=region, captured_at=at, timezone="Asia/Tokyo",
                       case_key=str(data.draw(st.integers(1, 10**6))))
    was, now = route(facts, CONFIDENT, before), route(facts, CONFIDENT, after)
    assert (now.model_decides, now.reason) == (was.model_decides, was.reason)
