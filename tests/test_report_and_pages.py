"""The agreement report, and the pages reviewers and admins use."""

from __future__ import annotations

import re
from datetime import UTC

import pytest
from django.http import QueryDict
from django.urls import reverse

from inference.models import ModelVersion, Prediction
from inference.services import model_version_register
from review.services import review_claim_next, review_submit
from reviewplatform.models import Case, Decision, Deployment, Review, ReviewTask
from reviewplatform.pipeline import case_route
from reviewplatform.services import case_submit
from rollout.reports.figures import Report
from rollout.reports.filters import report_filters_parse
from rollout.reports.selectors import report_build
from rollout.services import deployment_create, policy_publish
from tests.conftest import CAPTURED_AT, pending_answers_stored, png_bytes


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def submit(client_user, make_upload, django_capture_on_commit_callbacks):
    """Submit a case (its prediction job captured, never run) and return it."""
    counter = iter(range(10_000))

    def make(deployment: Deployment, *, region: str = "north", captured_at=CAPTURED_AT,
             image: bytes | None = None) -> Case:
        n = next(counter)
        with django_capture_on_commit_callbacks(execute=False):
            return case_submit(deployment=deployment, region_code=region,
                               image=make_upload(content=image or png_bytes(color=f"#00{n:04x}")),
                               captured_at=captured_at, external_id=f"case-{n}",
                               submitted_by=client_user)
    return make


def predict(case: Case, version: ModelVersion, label: str, confidence: float = 0.97,
            ) -> Prediction:
    """Store what a model version said about a case (the model itself is not run here)."""
    return Prediction.objects.create(case=case, model_version=version, status="ok", label=label,
                                     confidence=confidence, probabilities={label: confidence})


def human_decides(case: Case, reviewer, answer: str) -> None:
    """Route the case to the queue and let the reviewer answer it."""
    case_route(case_id=case.pk)
    task = review_claim_next(reviewer=reviewer)
    assert task.case_id == case.pk
    review_submit(task_id=task.pk, lease_token=task.lease_token, reviewer=reviewer,
                  answer=answer)


@pytest.fixture
def reviewed(deployment, champion, reviewer, submit):
    """Five cases the champion predicted and a human decided: 3 agree, 1 disagrees, 1 can't tell.

    The champion is unsure where the human disagrees, so no second opinion is asked for.
    """
    for model_says, human_says in [("3", "3"), ("3", "3"), ("5", "5"), ("8", "3"),
                                   ("1", Review.CANNOT_TELL)]:
        case = submit(deployment)
        predict(case, champion, model_says,
                confidence=0.97 if model_says == human_says else 0.6)
        human_decides(case, reviewer, human_says)
    return deployment


def report_of(deployment: Deployment) -> Report:
    """The report page's figures, with no filters."""
    return report_build(report_filters_parse(deployment=deployment, params=QueryDict()))


def test_it_measures_agreement_between_the_champion_and_humans(reviewed):
    agreement = report_of(reviewed).headline.agreement

    assert agreement.n == 4
    assert agreement.agreed == 3
    assert agreement.rate == 0.75
    assert 0 <= agreement.low < 0.75 < agreement.high <= 1
    # The Wilson interval for 3 of 4 (95%).
    assert agreement.low == pytest.approx(0.3006, abs=1e-3)
    assert agreement.high == pytest.approx(0.9544, abs=1e-3)


def test_it_builds_the_confusion_matrix(reviewed):
    headline = report_of(reviewed).headline

    labels = headline.labels
    assert labels == reviewed.labels
    expected = [[0] * len(labels) for _ in labels]
    expected[labels.index("3")][labels.index("3")] = 2
    expected[labels.index("5")][labels.index("5")] = 1
    expected[labels.index("3")][labels.index("8")] = 1
    assert headline.confusion == expected


def test_it_counts_cases_and_decisions(reviewed, submit):
    submit(reviewed)

    counts = report_of(reviewed).counts

    assert counts.cases == 6
    assert counts.by_status == {"decided": 5, "received": 1}
    assert counts.by_source == {"human": 5}


def test_it_measures_only_the_champion_and_only_human_decisions(
        reviewed, champion, trained_model, admin_user, reviewer, submit):
    challenger = model_version_register(deployment=reviewed, path=trained_model.path,
                                        name="challenger", actor=admin_user)
    # The challenger disagrees with every human: it must not count.
    for prediction in Prediction.objects.filter(model_version=champion):
        predict(prediction.case, challenger, "0")
    # A case the model decided alone has no human answer to compare with.
    policy_publish(deployment=reviewed, stage="full", rules=[], actor=admin_user,
                   reason="test: the model decides")
    decided_by_model = submit(reviewed)
    predict(decided_by_model, champion, "9", confidence=0.99)
    case_route(case_id=decided_by_model.pk)
    assert Decision.objects.get(case=decided_by_model).source == Decision.Source.MODEL

    report = report_of(reviewed)

    assert (report.headline.agreement.agreed, report.headline.agreement.n) == (3, 4)
    assert sum(map(sum, report.headline.confusion)) == 4
    assert report.counts.by_source == {"human": 5, "model": 1}


def test_it_reports_no_agreement_without_data(deployment):
    report = report_of(deployment)

    assert report.headline.agreement.n == 0
    assert report.headline.agreement.rate is None
    assert report.headline.agreement.low is None
    assert report.counts.cases == 0


def test_it_keeps_deployments_apart(reviewed, admin_user):
    other = deployment_create(slug="bears", name="Bears", labels=["grizzly", "black"],
                              regions=[("north", "North", "Europe/Oslo")], actor=admin_user)

    report = report_of(other)

    assert report.counts.cases == 0
    assert report.headline.agreement.n == 0
    assert report.headline.confusion == [[0, 0], [0, 0]]


# Pages


def test_it_requires_a_login_for_the_home_page(client, deployment):
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_it_shows_the_home_page_to_a_reviewer(client, reviewer, deployment):
    client.force_login(reviewer)

    response = client.get("/")

    assert response.status_code == 200
    assert 'id="start"' in response.content.decode()


def test_it_offers_no_review_to_an_outsider_on_the_home_page(client, outsider, deployment):
    client.force_login(outsider)

    response = client.get("/")

    assert response.status_code == 200
    assert 'id="start"' not in response.content.decode()


@pytest.mark.parametrize("page", ["report", "rollout"])
def test_it_forbids_the_admin_pages_to_an_outsider(client, outsider, deployment, page):
    client.force_login(outsider)

    response = client.get(f"/deployments/digits/{page}/")

    assert response.status_code == 403


@pytest.mark.parametrize("page", ["report", "rollout"])
def test_it_forbids_the_admin_pages_to_a_reviewer(client, reviewer, deployment, page):
    client.force_login(reviewer)

    assert client.get(f"/deployments/digits/{page}/").status_code == 403


def cell_text(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', html, re.S)
    assert match, f"no element #{element_id}"
    return match.group(1).strip()


def test_it_shows_the_report_to_an_admin(client, admin_user, reviewed):
    client.force_login(admin_user)

    response = client.get("/deployments/digits/report/")

    assert response.status_code == 200
    html = response.content.decode()
    assert cell_text(html, "n-cases") == "5"
    assert cell_text(html, "agreement") == "0.750"
    assert cell_text(html, "agreement-n") == "n = 4"
    table = re.search(r'<table id="confusion">(.*?)</table>', html, re.S).group(1)
    rows = re.findall(r"<tr><th>(\w+)</th>(.*?)</tr>", table, re.S)
    cells = {label: [int(n) for n in re.findall(r">(\d+)</td>", row)] for label, row in rows}
    assert list(cells) == reviewed.labels
    assert cells["3"] == [0, 0, 0, 2, 0, 0, 0, 0, 1, 0]
    assert cells["5"] == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert sum(map(sum, cells.values())) == 4


def test_it_shows_the_rollout_page_to_an_admin(client, admin_user, champion):
    client.force_login(admin_user)

    response = client.get("/deployments/digits/rollout/")

    assert response.status_code == 200
    html = response.content.decode()
    assert cell_text(html, "stage").startswith("shadow")
    assert "champion" in html
    assert champion.sha256[:12] in html
    assert "Europe/Oslo" in html


def test_it_answers_404_for_an_unknown_deployment(client, admin_user, deployment):
    client.force_login(admin_user)

    assert client.get("/deployments/bears/report/").status_code == 404


@pytest.mark.parametrize(("region", "local", "offset"), [
    ("north", "2026-05-01 21:30", "UTC+0200"),
    ("east", "2026-05-02 04:30", "UTC+0900"),
    ("west", "2026-05-01 12:30", "UTC-0700"),
])
def test_it_shows_the_task_in_the_regions_local_time(client, reviewer, deployment, submit,
                                                     region, local, offset):
    # Submitted in UTC: the page must convert to the region's own time zone.
    case = submit(deployment, region=region, captured_at=CAPTURED_AT.astimezone(UTC))
    case_route(case_id=case.pk)
    client.force_login(reviewer)

    claimed = client.post("/review/next/")

    task = ReviewTask.objects.get(case=case)
    assert claimed.status_code == 302
    assert claimed["Location"] == f"/review/tasks/{task.pk}/"
    html = client.get(claimed["Location"]).content.decode()
    assert cell_text(html, "case-local-time") == local
    assert offset in html
    assert f"({region})" in cell_text(html, "case-region")
    assert cell_text(html, "task-reason") == ReviewTask.Reason.SHADOW.label
    assert str(task.lease_token) in html


@pytest.fixture
def bears(admin_user) -> Deployment:
    """A deployment with word labels, so that a label shown on the page can be found."""
    return deployment_create(slug="bears", name="Bears", labels=["grizzly", "black", "teddy"],
                             regions=[("north", "North", "Europe/Oslo")], actor=admin_user)


def test_it_hides_the_champions_answer_from_a_blind_reviewer(client, reviewer, bears, submit):
    # A registered artifact is not needed to show a stored prediction.
    champion = ModelVersion.objects.create(deployment=bears, name="champion",
                                           artifact="models/bears.pkl", sha256="0" * 64,
                                           labels=bears.labels, is_champion=True)
    case = submit(bears)
    predict(case, champion, "grizzly", confidence=0.8765)
    case_route(case_id=case.pk)
    client.force_login(reviewer)

    html = client.get(client.post("/review/next/")["Location"]).content.decode()

    assert 'value="grizzly"' in html  # the answer buttons offer every label...
    outside_buttons = re.sub(r'<form[^>]*id="answer-form".*?</form>', "", html, flags=re.S)
    assert "grizzly" not in outside_buttons  # ...but nothing else names the model's answer
    for shown in ["0.8765", "0.877", "0.88", "87.65", "87.7", "88%", "88 %"]:
        assert shown not in html
    assert "confidence" not in html.lower()


def test_it_stores_the_answer_posted_with_the_lease_token(client, reviewer, deployment,
                                                          submit):
    case = submit(deployment)
    case_route(case_id=case.pk)
    client.force_login(reviewer)
    client.post("/review/next/")
    task = ReviewTask.objects.get(case=case)

    response = client.post(f"/review/tasks/{task.pk}/answer/",
                           {"lease_token": str(task.lease_token), "answer": "6"})

    assert response.status_code == 302
    assert pending_answers_stored() == 1
    decision = Decision.objects.get(case=case)
    assert (decision.label, decision.source) == ("6", Decision.Source.HUMAN)
    assert Review.objects.get(case=case).reviewer == reviewer


@pytest.mark.parametrize("token", ["", "not-a-uuid", "1234"])
def test_it_refuses_an_answer_with_a_malformed_lease_token(client, reviewer, deployment,
                                                           submit, token):
    case = submit(deployment)
    case_route(case_id=case.pk)
    client.force_login(reviewer)
    client.post("/review/next/")
    task = ReviewTask.objects.get(case=case)

    response = client.post(f"/review/tasks/{task.pk}/answer/",
                           {"lease_token": token, "answer": "6"})

    assert response.status_code == 400
    assert not Review.objects.exists()
    assert not Decision.objects.exists()


def test_it_refuses_an_answer_outside_the_labels_on_the_page(client, reviewer, deployment,
                                                             submit):
    case = submit(deployment)
    case_route(case_id=case.pk)
    client.force_login(reviewer)
    client.post("/review/next/")
    task = ReviewTask.objects.get(case=case)

    response = client.post(f"/review/tasks/{task.pk}/answer/",
                           {"lease_token": str(task.lease_token), "answer": "cat"})

    assert response.status_code == 400
    assert not Decision.objects.exists()


def test_it_forbids_reviewing_to_an_outsider(client, outsider, deployment, submit):
    case = submit(deployment)
    case_route(case_id=case.pk)
    client.force_login(outsider)

    assert client.post("/review/next/").status_code == 403
    assert ReviewTask.objects.get(case=case).status == ReviewTask.Status.OPEN


def test_it_hides_a_case_image_from_an_outsider(client, outsider, deployment, submit):
    case = submit(deployment)
    client.force_login(outsider)

    assert client.get(f"/cases/{case.pk}/image/").status_code == 404


def test_it_hides_a_case_image_from_an_anonymous_visitor(client, deployment, submit):
    case = submit(deployment)

    response = client.get(f"/cases/{case.pk}/image/")

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_it_serves_a_case_image_to_a_reviewer(client, reviewer, deployment, submit):
    image = png_bytes((20, 24), "red")
    case = submit(deployment, image=image)
    client.force_login(reviewer)

    response = client.get(f"/cases/{case.pk}/image/")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == image
    assert "private" in response["Cache-Control"]


def test_it_lists_every_model_in_the_django_admin(client, admin_user):
    client.force_login(admin_user)

    response = client.get(reverse("admin:index"))

    assert response.status_code == 200
    html = response.content.decode()
    for app, model in [
        ("reviewplatform", "deployment"), ("reviewplatform", "region"),
        ("reviewplatform", "case"), ("reviewplatform", "reviewtask"),
        ("reviewplatform", "review"), ("reviewplatform", "decision"),
        ("reviewplatform", "apikey"), ("inference", "modelversion"),
        ("inference", "prediction"), ("rollout", "policyversion"),
    ]:
        assert reverse(f"admin:{app}_{model}_changelist") in html, f"{app}.{model} missing"


@pytest.mark.parametrize("path", ["/deployments/digits/report/", "/deployments/digits/rollout/",
                                  "/deployments/digits/report/disagreements/", "/review/team/"])
def test_it_asks_an_anonymous_visitor_to_log_in_on_admin_pages(client, deployment, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
