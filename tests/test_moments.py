"""The one way a moment is shown: local time with its zone in a case's region, UTC on hover."""

from __future__ import annotations

from datetime import UTC, datetime

from django.template import Context, Template

from reviewplatform.templatetags.moments import moment

SUMMER = datetime(2026, 6, 1, 6, 30, 15, tzinfo=UTC)
WINTER = datetime(2026, 1, 15, 23, 5, tzinfo=UTC)


def test_a_case_time_reads_in_its_zone_with_utc_on_hover():
    assert moment(SUMMER, "Europe/Berlin") == (
        '<time datetime="2026-06-01T06:30:15+00:00" title="2026-06-01 06:30:15 UTC">'
        "2026-06-01 08:30 CEST</time>")
    # Across midnight and in winter time.
    assert ">2026-01-16 00:05 CET</time>" in moment(WINTER, "Europe/Berlin")
    assert ">2026-01-15 18:05 EST</time>" in moment(WINTER, "America/New_York")


def test_a_zone_without_an_abbreviation_names_its_offset():
    assert ">2026-06-01 09:30 UTC+03</time>" in moment(SUMMER, "Europe/Istanbul")


def test_times_of_no_case_read_in_utc_and_seconds_on_request():
    assert ">2026-06-01 06:30 UTC</time>" in moment(SUMMER)
    assert ">2026-06-01 06:30:15 UTC</time>" in moment(SUMMER, None, True)
    assert ">2026-06-01 06:30 UTC</time>" in moment(SUMMER, "Not/AZone")
    assert moment(None, "Europe/Berlin") == ""


def test_the_tag_escapes_nothing_it_should_not_and_works_in_a_template():
    rendered = Template("{% load moments %}{% moment when zone %}").render(
        Context({"when": SUMMER, "zone": "Asia/Tokyo"}))
    assert rendered == ('<time datetime="2026-06-01T06:30:15+00:00" '
                        'title="2026-06-01 06:30:15 UTC">2026-06-01 15:30 JST</time>')
