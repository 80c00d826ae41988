"""The scope editor's form fields, read into a policy's values (no database)."""

from __future__ import annotations

from rollout.scope.form import scope_form_from_spec, scope_form_parse, scope_form_spares_add


def post(**fields) -> dict[str, list[str]]:
    """Form data as `request.POST.lists()` gives it: `rule_0_name` stands for `rule-0-name`."""
    base = {"stage": "limited", "confidence_threshold": "0.9", "audit_rate": "0.05"}
    out = {k: [v] for k, v in base.items()}
    for key, value in fields.items():
        if key.startswith("rule_"):
            key = (key.replace("_", "-").replace("-regions-not", "-regions_not")
                   .replace("-confidence-threshold", "-confidence_threshold"))
        out[key] = value if isinstance(value, list) else [value]
    return out


def test_it_reads_a_rule_from_its_fields():
    form = scope_form_parse(post(
        rule_0_name="", rule_0_regions=["north", "east"], rule_0_regions_not=["west"],
        rule_0_window_0_start="08:00", rule_0_window_0_end="18:00",
        rule_0_window_1_start="22:00:00", rule_0_window_1_end="06:00",
        rule_0_weekdays=["mon", "tue"], rule_0_date_from="2026-05-01", rule_0_date_until="",
        rule_0_percent="50", rule_0_confidence_threshold="0.95"))

    assert form.errors == {}
    assert form.values == {"stage": "limited", "confidence_threshold": 0.9, "audit_rate": 0.05,
                           "rules": [{"regions": ["north", "east"], "regions_not": ["west"],
                                      "windows": [{"start": "08:00", "end": "18:00"},
                                                  {"start": "22:00", "end": "06:00"}],
                                      "weekdays": ["mon", "tue"],
                                      "dates": {"from": "2026-05-01"}, "percent": 50,
                                      "confidence_threshold": 0.95}]}


def test_it_leaves_out_blank_rows_removed_rules_and_conditions_that_select_everything():
    form = scope_form_parse(post(
        rule_0_name="kept", rule_0_window_0_start="", rule_0_window_0_end="",
        rule_0_weekdays=["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        rule_2_name="removed", rule_2_remove="1", rule_2_percent="5",
        rule_5_name="", rule_5_window_0_start="", rule_5_window_0_end="",
        rule_7_percent="12.5"))

    assert form.values is not None
    assert form.values["rules"] == [{"name": "kept"}, {"percent": 12.5}]
    assert [r.index for r in form.kept] == [0, 7]


def test_it_names_each_field_it_cannot_read():
    form = scope_form_parse(post(
        confidence_threshold="high", rule_0_percent="half", rule_0_window_3_start="08:00",
        rule_1_confidence_threshold="1e999"))

    assert form.values is None
    assert form.errors == {
        "confidence_threshold": "confidence threshold must be a number from 0 to 1",
        "rule-0-percent": "percent must be a number from 0 to 100",
        "rule-0-window-3": "a window needs both a start and an end",
        "rule-1-confidence_threshold":
            "confidence threshold must be a number from 0 to 1, or blank for the policy's"}
    assert form.rules[0].windows[0].error == "a window needs both a start and an end"


def test_it_puts_a_validation_error_beside_the_field_it_came_from():
    form = scope_form_parse(post(
        rule_0_name="a", rule_4_name="b", rule_4_window_0_start="", rule_4_window_0_end="",
        rule_4_window_2_start="08:00", rule_4_window_2_end="08:00", rule_4_date_until="x"))
    assert form.values is not None

    assert form.error_add("rules[1].windows[0]", "an empty window") == "rule-4-window-2"
    assert form.error_add("rules[1].dates.until", "bad date") == "rule-4-date-until"
    assert form.error_add("rules[0].regions", "unknown region") == "rule-0-regions"
    assert form.error_add("stage", "unknown stage") == "stage"
    assert form.rules[1].windows[1].error == "an empty window"
    assert form.rules[1].errors == {"dates": "bad date"}
    assert form.rules[0].errors == {"regions": "unknown region"}


def test_the_json_view_wins_when_it_was_edited():
    form = scope_form_parse(post(rule_0_name="from-the-form", rules='[{"name": "from-json"}]',
                                 rules_initial='[{"name": "from-the-form"}]'))
    assert form.values is not None
    assert form.values["rules"] == [{"name": "from-json"}]
    assert form.error_add("rules[0].percent", "bad") == "rules[0].percent"

    unchanged = scope_form_parse(post(rule_0_name="from-the-form", rules="[]",
                                      rules_initial="[]"))
    assert unchanged.values is not None
    assert unchanged.values["rules"] == [{"name": "from-the-form"}]
    assert unchanged.rules_json == unchanged.rules_initial == (
        '[\n  {\n    "name": "from-the-form"\n  }\n]')

    broken = scope_form_parse(post(rules="[{", rules_initial="[]"))
    assert broken.values is None
    assert broken.errors["rules"].startswith("rules are not valid JSON")
    assert broken.json_error.startswith("rules: rules are not valid JSON")


def test_it_fills_the_form_with_a_policy_and_offers_spare_rows():
    form = scope_form_spares_add(scope_form_from_spec({
        "stage": "limited", "confidence_threshold": 0.9, "audit_rate": 0.05,
        "rules": [{"name": "day", "regions": ["north"], "percent": 25,
                   "windows": [{"start": "08:00", "end": "18:00"}],
                   "dates": {"until": "2026-06-30"}}]}))

    (day, spare) = form.rules
    assert (day.name, day.regions, day.percent, day.date_until) == ("day", ["north"], "25",
                                                                    "2026-06-30")
    assert [(w.index, w.start, w.end) for w in day.windows] == [(0, "08:00", "18:00"),
                                                                (1, "", "")]
    assert (spare.index, spare.blank, len(spare.windows)) == (1, True, 1)
    assert (form.confidence_threshold, form.audit_rate) == ("0.9", "0.05")
