"""Drift before labels on the report: real predictions of the real learner, their features
compared per region and day with the champion's reference set, before anyone reviews."""

from __future__ import annotations

import html
import random
import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from django.http import QueryDict
from django.template.defaultfilters import floatformat
from PIL import Image, ImageOps

from inference.demo_model import night_time
from inference.models import Prediction
from reviewplatform.models import Review
from reviewplatform.pipeline import predict_waiting
from rollout.reports.drift import ALPHA, PERMUTATIONS, RECENT_DAYS
from rollout.reports.features import case_feature_samples
from rollout.reports.figures import DriftCell
from rollout.reports.filters import report_filters_parse
from rollout.reports.selectors import report_build
from tests.reports_factory import decide, sim_model
from tests.test_inference_batching import media_root, png, submit  # noqa: F401 - fixtures
from tests.test_ood_features import (  # noqa: F401 - fixtures
    _detectors_forgotten,
    fitted,
    held_out_digits,
)

NONE = "\N{EN DASH}"  # what the page shows for a figure it has not


def table_rows(page: str, element_id: str) -> list[list[str]]:
    match = re.search(rf'<table id="{element_id}"[^>]*>(.*?)</table>', page, flags=re.S)
    assert match, f"table #{element_id} not on the page"
    return [[re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", cell))).strip()
             for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", match.group(1), flags=re.S)]


def shown(cell: DriftCell) -> list[str]:
    """A cell as the page must show it, formatted by the template's own filter."""
    figures = ([floatformat(cell.test.mmd2, 4), floatformat(cell.test.p_value, 3)]
               if cell.test else [NONE, NONE])
    return [cell.region, cell.key.isoformat(), str(cell.predicted),
            floatformat(cell.ood_rate, 3), str(cell.compared), *figures, cell.verdict]


def dark_inverted(path) -> bytes:
    """The digit's colours inverted (white strokes on black), then darkened like a night
    capture."""
    inverted = ImageOps.invert(Image.open(path).convert("RGB"))
    return png(night_time(inverted, rng=random.Random(path.name)))


@pytest.fixture
def predicted(fitted, champion, submit, held_out_digits):  # noqa: F811
    """Held-out digits of every label in north, the same kind darkened and inverted in east,
    a handful in west; all predicted by the worker's own path, none reviewed."""
    digits = random.Random(0).sample(held_out_digits, 85)  # the files are sorted by label
    for path in digits[:40]:
        submit(path, region="north")
    for path in digits[40:80]:
        submit(content=dark_inverted(path), region="east")
    for path in digits[80:]:
        submit(path, region="west")
    assert predict_waiting(batch_size=128, wait_ms=0) == 85
    assert Prediction.objects.filter(features__isnull=False).count() == 85
    assert not Review.objects.exists()


def test_it_finds_the_darkened_region_drifted_and_the_other_like_the_reference(
        predicted, deployment):
    f = report_filters_parse(deployment=deployment, params=QueryDict(""))

    cells = {cell.region: cell for cell in report_build(f).drift}

    north, east, west = cells["north"], cells["east"], cells["west"]
    assert (north.predicted, east.predicted, west.predicted) == (40, 40, 5)
    assert (north.compared, east.compared, west.compared) == (40, 40, 5)
    assert east.verdict == "drifted"
    assert east.test is not None and east.test.p_value == 1 / (1 + PERMUTATIONS)
    assert north.verdict == "like the reference"
    assert north.test is not None and north.test.p_value >= ALPHA
    assert east.test.mmd2 > 10 * max(north.test.mmd2, 1e-3)
    assert east.ood_rate >= 0.9 and north.ood_rate <= 0.15  # the detector agrees
    assert (west.verdict, west.test) == ("too few cases", None)
    # Both sides of a cell: the cases compared, and the reference capped at 200 of its images.
    assert (east.test.cases, east.test.reference) == (40, 200)


def test_the_report_page_shows_each_cells_figures_and_verdict(predicted, deployment, client,
                                                              admin_user):
    f = report_filters_parse(deployment=deployment, params=QueryDict(""))
    cells = report_build(f).drift
    client.force_login(admin_user)

    page = client.get("/deployments/digits/report/").content.decode()

    rows = table_rows(page, "drift-by-region-day")
    assert rows[0] == ["region", "day", "predicted", "out of domain", "with features", "MMD²",
                       "p-value", "verdict"]
    # Each region's local day of the same capture time: Oslo's evening is Tokyo's morning.
    assert [row[:2] for row in rows[1:]] == [["east", "2026-05-02"], ["north", "2026-05-01"],
                                            ["west", "2026-05-01"]]
    assert rows[1:] == [shown(cell) for cell in cells]
    assert rows[1][-1] == "drifted" and rows[2][-1] == "like the reference"
    assert rows[3][-3:] == [NONE, NONE, "too few cases"]


def test_the_region_filter_keeps_its_own_cells(predicted, deployment, client, admin_user):
    client.force_login(admin_user)

    page = client.get("/deployments/digits/report/?region=north").content.decode()

    rows = table_rows(page, "drift-by-region-day")
    assert [row[0] for row in rows[1:]] == ["north"]
    assert rows[1][-1] == "like the reference"


def test_without_a_reference_set_no_cell_is_judged(champion, submit, held_out_digits,  # noqa: F811
                                                   deployment):
    for path in random.Random(1).sample(held_out_digits, 12):
        submit(path, region="north")
    predict_waiting(batch_size=32, wait_ms=0)
    f = report_filters_parse(deployment=deployment, params=QueryDict(""))

    [cell] = report_build(f).drift

    assert (cell.region, cell.predicted, cell.compared) == ("north", 12, 12)
    assert (cell.verdict, cell.test) == ("no reference features", None)


def test_it_judges_the_periods_last_days_with_cases(deployment, client_user, reviewer):
    model = sim_model(deployment)
    for day in range(1, 17):
        decide(deployment, model, submitted_by=client_user, reviewer=reviewer,
               captured_at=datetime(2026, 5, day, 12, tzinfo=ZoneInfo("Europe/Oslo")),
               model_label="1", human="1")

    every = report_build(report_filters_parse(deployment=deployment, params=QueryDict("")))
    until = report_build(report_filters_parse(deployment=deployment,
                                              params=QueryDict("to=2026-05-10")))

    assert RECENT_DAYS == 14
    assert [cell.key for cell in every.drift] == [date(2026, 5, d) for d in range(3, 17)]
    assert [cell.key for cell in until.drift] == [date(2026, 5, d) for d in range(1, 11)]
    assert {(c.region, c.predicted, c.compared, c.verdict) for c in every.drift} == {
        ("north", 1, 0, "too few cases")}  # no features stored: nothing to compare


def test_it_samples_a_capped_fixed_share_of_a_cells_features(deployment, client_user,
                                                             reviewer):
    model = sim_model(deployment)
    for n in range(8):
        case = decide(deployment, model, submitted_by=client_user, reviewer=reviewer,
                      captured_at=datetime(2026, 5, 1, 12, tzinfo=ZoneInfo("Europe/Oslo")),
                      model_label="1", human="1")
        Prediction.objects.filter(case=case).update(features=[float(n), 1.0])
    f = report_filters_parse(deployment=deployment, params=QueryDict(""))
    north = deployment.regions.get(code="north").pk

    [(key, sample)] = case_feature_samples(f, days=[date(2026, 5, 1)], cap=5).items()
    again = case_feature_samples(f, days=[date(2026, 5, 1)], cap=5)[key]

    assert key == (north, date(2026, 5, 1))
    assert (sample.total, sample.rows.shape) == (8, (5, 2))
    assert sample.rows.tolist() == again.rows.tolist()  # the same sample on every load
    assert sample.rows[:, 0].tolist() != [0.0, 1.0, 2.0, 3.0, 4.0]  # not the first five
    assert case_feature_samples(f, days=[date(2026, 5, 2)]) == {}
