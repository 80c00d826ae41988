"""The staff rollout API gives each policy version's diff against the version before it, as
the rollout page does: in its answer to a change, in the current policy and in the history."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

URL = "/api/v1/deployments/digits/policy/"
NORTH_DAY = {"name": "north-day", "regions": ["north"],
             "windows": [{"start": "08:00", "end": "18:00"}], "percent": 25}


@pytest.fixture
def staff_api(admin_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def limited(*, percent: int, threshold: float, reason: str) -> dict:
    return {"stage": "limited", "rules": [{**NORTH_DAY, "percent": percent}],
            "confidence_threshold": threshold, "audit_rate": 0.05, "reason": reason,
            "override_reason": "team sign-off"}


def test_each_version_is_compared_with_the_one_before_it(staff_api, deployment):
    steps = [
        (URL, limited(percent=25, threshold=0.9, reason="pilot in the north")),
        (URL, limited(percent=50, threshold=0.95, reason="half the north, surer")),
        (f"{URL}pause/", {"reason": "night images look odd"}),
        (f"{URL}rollback/", {"version": 3, "reason": "explained: a lens cap",
                             "override_reason": "checked by hand"}),
        (f"{URL}rollback/", {"version": 1, "reason": "back to watching"}),
    ]
    expected = {
        1: ["first version"],
        2: ["stage: shadow → limited",
            "rule north-day added: {name: north-day, percent: 25, regions: [north], "
            "windows: [{end: 18:00, start: 08:00}]}"],
        3: ["confidence threshold: 0.9 → 0.95", "rule north-day: percent 25 → 50"],
        4: ["stage: limited → paused"],
        5: ["stage: paused → limited"],
        6: ["stage: limited → shadow", "confidence threshold: 0.95 → 0.9",
            "rule north-day removed"],
    }
    assert staff_api.get(URL).json()["diff"] == expected[1]

    for number, (path, body) in enumerate(steps, start=2):
        published = staff_api.post(path, body, format="json")
        assert published.status_code == 201, published.json()
        assert published.json()["version"] == number
        assert published.json()["diff"] == expected[number], number
        current = staff_api.get(URL).json()
        assert (current["version"], current["diff"]) == (number, expected[number])

    history = staff_api.get(f"{URL}history/").json()["versions"]
    assert {v["version"]: v["diff"] for v in history} == expected
    assert [(v["version"], v["kind"], v["copied_from"]) for v in history[:2]] == [
        (6, "rollback", 1), (5, "rollback", 3)]


def test_the_page_and_the_api_show_the_same_diffs(staff_api, client, admin_user, deployment):
    staff_api.post(URL, limited(percent=25, threshold=0.9, reason="pilot"), format="json")
    staff_api.post(f"{URL}rollback/", {"version": 1, "reason": "back to watching"},
                   format="json")
    client.force_login(admin_user)

    page = client.get("/deployments/digits/rollout/").content.decode()
    current = staff_api.get(URL).json()

    assert current["diff"] == ["stage: limited → shadow", "rule north-day removed"]
    for line in current["diff"]:
        assert line.replace("→", "&rarr;") in page or line in page
