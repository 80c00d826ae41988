"""The report filtered by region, with reviewed cases in more than one region: each filter
counts its own region's cases and no other's."""

from __future__ import annotations

import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.reports_factory import decide, sim_model

DAY = datetime(2026, 5, 1, 10, 0, tzinfo=ZoneInfo("Europe/Oslo"))


@pytest.fixture
def two_regions(deployment, client_user, reviewer) -> dict[str, list[int]]:
    """North: 4 reviewed cases, the model right on 1. East: 3 reviewed, right on all 3, and
    1 decided by the model alone."""
    model = sim_model(deployment)
    cases: dict[str, list[int]] = {"north": [], "east": []}
    rows = [("north", "3", "3"), ("north", "8", "3"), ("north", "1", "7"), ("north", "5", "6"),
            ("east", "2", "2"), ("east", "4", "4"), ("east", "9", "9")]
    for region, said, human in rows:
        case = decide(deployment, model, submitted_by=client_user, reviewer=reviewer,
                      captured_at=DAY, model_label=said, human=human, region=region)
        cases[region].append(case.pk)
    alone = decide(deployment, model, submitted_by=client_user, reviewer=reviewer,
                   captured_at=DAY, model_label="2", human=None, source="model", region="east")
    cases["east"].append(alone.pk)
    return cases


def text(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', html, re.S)
    assert match, f"no element #{element_id}"
    return match.group(1).strip()


@pytest.mark.parametrize(("query", "n_cases", "agreement", "n"), [
    ("", "8", "0.571", "n = 7"),
    ("?region=north", "4", "0.250", "n = 4"),
    ("?region=east", "4", "1.000", "n = 3"),
])
def test_the_report_counts_only_the_filtered_regions_cases(client, admin_user, two_regions,
                                                           query, n_cases, agreement, n):
    client.force_login(admin_user)

    response = client.get(f"/deployments/digits/report/{query}")

    assert response.status_code == 200
    html = response.content.decode()
    assert (text(html, "n-cases"), text(html, "agreement"), text(html, "agreement-n")) == (
        n_cases, agreement, n)


@pytest.mark.parametrize("region", ["north", "east"])
def test_the_decisions_export_holds_only_the_filtered_regions_cases(client, admin_user,
                                                                   two_regions, region):
    client.force_login(admin_user)

    response = client.get(f"/deployments/digits/report/decisions.json?region={region}")

    items = json.loads(b"".join(response.streaming_content))
    assert sorted(item["case_id"] for item in items) == sorted(two_regions[region])
