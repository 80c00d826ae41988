"""Following one's cases: GET /api/v1/cases/ (filters, cursor pages) and each case's
decision and timeline, on the list and the detail alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from inference.models import Prediction
from reviewplatform.models import Case, Decision, Deployment, ReviewTask
from reviewplatform.services import api_key_create
from rollout.selectors import policy_current
from rollout.services import deployment_create
from tests.reports_factory import sim_model

URL = "/api/v1/cases/"
T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def iso(minutes: float) -> str:
    return at(minutes).isoformat()


def key_client(user: User) -> APIClient:
    """A client with a key scoped to every deployment: what it sees is its own cases."""
    client = APIClient()
    _, key = api_key_create(user=user, name="k", deployments=list(Deployment.objects.all()))
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def case_row(deployment, user, external_id: str, *, created: float, captured: float = 0,
             region: str = "north", status: str = Case.Status.RECEIVED) -> Case:
    case = Case.objects.create(
        deployment=deployment, region=deployment.regions.get(code=region),
        external_id=external_id, image="cases/x.png", image_sha256="0" * 64, width=8,
        height=8, captured_at=at(captured), submitted_by=user, status=status)
    Case.objects.filter(pk=case.pk).update(created_at=at(created))
    return case


def predicted(case: Case, model, minutes: float, label: str = "7") -> Prediction:
    prediction = Prediction.objects.create(case=case, model_version=model, label=label,
                                           status=Prediction.Status.OK, confidence=0.97)
    Prediction.objects.filter(pk=prediction.pk).update(created_at=at(minutes))
    return prediction


def task(case: Case, reason: str, minutes: float, *, claimed: float | None = None,
         rule: str = "") -> ReviewTask:
    row = ReviewTask.objects.create(
        case=case, reason=reason, rule=rule,
        policy_version=policy_current(deployment_id=case.deployment_id),
        claimed_at=at(claimed) if claimed is not None else None)
    ReviewTask.objects.filter(pk=row.pk).update(created_at=at(minutes))
    return row


def decided(case: Case, minutes: float, *, label: str, source: str, rule: str = "",
            prediction: Prediction | None = None) -> Decision:
    decision = Decision.objects.create(
        case=case, label=label, source=source, rule=rule, prediction=prediction,
        policy_version=policy_current(deployment_id=case.deployment_id))
    Decision.objects.filter(pk=decision.pk).update(decided_at=at(minutes))
    return decision


@pytest.fixture
def other_client(db) -> User:
    user = User.objects.create_user(username="other-client")
    user.groups.add(Group.objects.get(name="api client"))
    return user


@pytest.fixture
def cases(deployment, client_user, other_client) -> dict[str, Case]:
    """One case in each state, submitted a minute apart by the client; one by another."""
    model = sim_model(deployment, name="digits-v3")
    received = case_row(deployment, client_user, "received", created=0, captured=-60)
    queued = case_row(deployment, client_user, "queued", created=1, captured=-30,
                      region="east", status=Case.Status.IN_REVIEW)
    predicted(queued, model, 1.5)
    task(queued, ReviewTask.Reason.SHADOW, 2)
    human = case_row(deployment, client_user, "human", created=2, captured=-20,
                     status=Case.Status.DECIDED)
    predicted(human, model, 2.5)
    task(human, ReviewTask.Reason.LOW_CONFIDENCE, 3, claimed=4, rule="north-day")
    task(human, ReviewTask.Reason.SECOND_OPINION, 6, claimed=5)  # a claim after the first
    decided(human, 7, label="4", source=Decision.Source.HUMAN, rule="north-day")
    model_decided = case_row(deployment, client_user, "model", created=3, captured=-10,
                             status=Case.Status.DECIDED)
    prediction = predicted(model_decided, model, 3.5, label="9")
    decided(model_decided, 3.75, label="9", source=Decision.Source.MODEL, rule="north-day",
            prediction=prediction)
    task(model_decided, ReviewTask.Reason.AUDIT, 3.75, claimed=9)
    task(model_decided, ReviewTask.Reason.GOLD, 8, claimed=8)  # gold: not this case's claim
    theirs = case_row(deployment, other_client, "theirs", created=4, captured=-5)
    return {"received": received, "queued": queued, "human": human, "model": model_decided,
            "theirs": theirs}


def listed(client: APIClient, query: str = "") -> list[str]:
    response = client.get(f"{URL}{query}")
    assert response.status_code == 200, response.content
    return [case["external_id"] for case in response.json()["results"]]


def test_it_lists_only_the_callers_cases_newest_first(api, other_client, cases):
    assert listed(api) == ["model", "human", "queued", "received"]
    assert listed(key_client(other_client)) == ["theirs"]


def test_a_user_who_may_see_decisions_sees_every_case(admin_user, cases):
    client = APIClient()
    client.force_authenticate(admin_user)

    assert listed(client) == ["theirs", "model", "human", "queued", "received"]


def test_a_reviewer_reads_no_decision_through_the_api(reviewer, cases):
    """A decision shows the model's answer, which blind review hides from reviewers."""
    client = APIClient()
    client.force_authenticate(reviewer)

    assert listed(client) == []
    model_decided = Case.objects.get(external_id="model")
    assert client.get(f"{URL}{model_decided.pk}/").status_code == 404


def test_a_user_who_submitted_nothing_sees_nothing(outsider, cases):
    assert listed(key_client(outsider)) == []


def by_external_id(api) -> dict[str, dict]:
    return {case["external_id"]: case for case in api.get(URL).json()["results"]}


def test_it_shows_a_received_case_with_only_its_arrival(api, cases):
    case = by_external_id(api)["received"]

    assert case["decision"] is None
    assert case["timeline"] == {"received": iso(0), "predicted": None, "routed": None,
                                "claimed": None, "decided": None}


def test_it_shows_a_queued_case_routed_to_review_with_the_reason(api, cases):
    case = by_external_id(api)["queued"]

    assert (case["status"], case["region"], case["decision"]) == ("in_review", "east", None)
    assert case["timeline"] == {
        "received": iso(1), "predicted": iso(1.5),
        "routed": {"at": iso(2), "to": "review", "reason": "shadow", "rule": "",
                   "why": "shadow stage: every case is reviewed"},
        "claimed": None, "decided": None}


def test_it_shows_a_human_decision_with_its_first_claim(api, cases):
    case = by_external_id(api)["human"]

    assert case["decision"] == {"label": "4", "source": "human", "model_version": None,
                                "policy_version": 1, "decided_at": iso(7)}
    assert case["timeline"] == {
        "received": iso(2), "predicted": iso(2.5),
        "routed": {"at": iso(3), "to": "review", "reason": "low_confidence",
                   "rule": "north-day", "why": "model not confident enough"},
        "claimed": iso(4), "decided": iso(7)}


def test_it_shows_a_model_decision_with_its_model_version_and_route(api, cases):
    case = by_external_id(api)["model"]

    assert case["decision"] == {"label": "9", "source": "model", "model_version": "digits-v3",
                                "policy_version": 1, "decided_at": iso(3.75)}
    assert case["timeline"] == {
        "received": iso(3), "predicted": iso(3.5),
        "routed": {"at": iso(3.75), "to": "model", "reason": "in_scope", "rule": "north-day",
                   "why": "inside the model's scope and confident enough: the model decided"},
        "claimed": iso(9), "decided": iso(3.75)}


def test_the_detail_shows_what_the_list_shows(api, cases):
    for external_id, listed_case in by_external_id(api).items():
        detail = api.get(f"{URL}{cases[external_id].pk}/")

        assert detail.status_code == 200
        assert detail.json() == listed_case


def test_the_detail_hides_another_clients_case(api, cases):
    response = api.get(f"{URL}{cases['theirs'].pk}/")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.fixture
def bears_case(admin_user, client_user) -> Case:
    bears = deployment_create(slug="bears", name="Bears", labels=["grizzly", "black"],
                              regions=[("north", "North", "Europe/Oslo")], actor=admin_user)
    return case_row(bears, client_user, "bear-1", created=-1, captured=-90)


@pytest.mark.parametrize(("query", "expected"), [
    ("?deployment=digits", ["model", "human", "queued", "received"]),
    ("?deployment=bears", ["bear-1"]),
    ("?status=decided", ["model", "human"]),
    ("?status=in_review", ["queued"]),
    ("?region=east", ["queued"]),
    ("?source=model", ["model"]),
    ("?source=human", ["human"]),
    ("?external_id=human", ["human"]),
    ("?external_id=hum", []),
    # after: from that instant on; before: up to it, not including it
    (f"?captured_after={iso(-20)}", ["model", "human"]),
    (f"?captured_before={iso(-20)}", ["queued", "received", "bear-1"]),
    # 09:50+02:00 is 07:50 UTC, the capture time of "model": excluded
    ("?captured_after=2026-05-04T07:30:00%2B00:00&captured_before=2026-05-04T09:50:00%2B02:00",
     ["human", "queued"]),
    (f"?created_after={iso(2)}", ["model", "human"]),
    (f"?created_before={iso(0)}", ["bear-1"]),
    ("?created_after=2026-05-04T10:01:00%2B02:00&status=in_review", ["queued"]),
    ("?deployment=digits&status=decided&source=human&region=north", ["human"]),
])
def test_it_filters_the_list(api, cases, bears_case, query, expected):
    assert listed(api, query.replace("+", "%2B")) == expected


def test_it_answers_a_deployment_filter_alike_whether_the_deployment_exists_or_not(
        api, cases, admin_user):
    # Neither a 400 for the unknown one nor a 403 for the other: the answer tells no client
    # which deployments exist.
    deployment_create(slug="letters", name="Letters", labels=["a", "b"],
                      regions=[("north", "North", "UTC")], actor=admin_user)

    unknown = api.get(f"{URL}?deployment=nowhere")
    not_the_callers = api.get(f"{URL}?deployment=letters")

    assert unknown.status_code == not_the_callers.status_code == 200
    assert unknown.json() == not_the_callers.json() == {"next": None, "previous": None,
                                                         "results": []}


@pytest.mark.parametrize(("query", "field", "message"), [
    ("?captured_after=yesterday", "captured_after",
     "expected an ISO 8601 date-time, e.g. 2026-05-01T21:30:00+02:00"),
    ("?captured_before=2026-05-04T08:00:00", "captured_before",
     "the date-time needs a UTC offset, e.g. 2026-05-01T21:30:00+02:00"),
    ("?created_after=2026-13-45T08:00:00%2B00:00", "created_after",
     "expected an ISO 8601 date-time, e.g. 2026-05-01T21:30:00+02:00"),
    ("?created_before=soon", "created_before",
     "expected an ISO 8601 date-time, e.g. 2026-05-01T21:30:00+02:00"),
    ("?status=lost", "status", "lost is not one of received, in_review, decided"),
    ("?source=robot", "source", "robot is not one of human, model"),
    ("?page_size=0", "page_size", "page_size must be a whole number from 1 to 200"),
    ("?page_size=201", "page_size", "page_size must be a whole number from 1 to 200"),
    ("?page_size=ten", "page_size", "page_size must be a whole number from 1 to 200"),
    # "²" is a digit to str.isdigit(), not to int().
    ("?page_size=²", "page_size", "page_size must be a whole number from 1 to 200"),
    ("?page_size=" + "9" * 5000, "page_size", "page_size must be a whole number from 1 to 200"),
    ("?cursor=not-a-cursor", "cursor", "this cursor was not given out by the API: follow "
                                       "the next and previous links as they are"),
    # Well-formed cursors ("p=1", "p=foo") whose position is no creation time.
    ("?cursor=cD0x", "cursor", "this cursor was not given out by the API: follow "
                               "the next and previous links as they are"),
    ("?cursor=cD1mb28=", "cursor", "this cursor was not given out by the API: follow "
                                   "the next and previous links as they are"),
    ("?region=%00", "region", "region may not contain NUL characters"),
])
def test_it_refuses_a_bad_query_naming_the_parameter(api, cases, query, field, message):
    response = api.get(f"{URL}{query}")

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert body["fields"] == {field: [message]}


def test_it_pages_with_a_cursor_without_losing_or_repeating_a_case(api, client_user,
                                                                   deployment):
    # Cases created in the same instant too: the cursor must still keep them apart.
    for n in range(7):
        case_row(deployment, client_user, f"c{n}", created=n // 2)
    seen, sizes, url = [], [], f"{URL}?page_size=3"

    while url:
        body = api.get(url).json()
        sizes.append(len(body["results"]))
        seen += [case["external_id"] for case in body["results"]]
        url = body["next"] and urlsplit(body["next"])._replace(scheme="", netloc="").geturl()

    assert sizes == [3, 3, 1]
    assert seen == ["c6", "c5", "c4", "c3", "c2", "c1", "c0"]


def test_a_page_holds_50_cases_unless_asked_for_up_to_200(api, client_user, deployment):
    for n in range(201):
        Case.objects.create(deployment=deployment, region=deployment.regions.get(code="north"),
                            external_id=f"bulk-{n}", image="cases/x.png",
                            image_sha256="0" * 64, width=8, height=8, captured_at=T0,
                            submitted_by=client_user)

    first = api.get(URL).json()
    largest = api.get(f"{URL}?page_size=200").json()

    assert len(first["results"]) == 50
    assert first["next"] is not None and first["previous"] is None
    assert len(largest["results"]) == 200


def test_the_list_reads_a_page_in_a_fixed_number_of_queries(
        api, cases, client_user, deployment, django_assert_num_queries):
    # The page itself with every decision and timeline: the key, with its user's permissions,
    # is cached by the first request (which also notes the key's last use of the minute).
    api.get(URL)
    with django_assert_num_queries(1):
        small = api.get(URL)
    model = sim_model(deployment, name="digits-v4", champion=False)
    for n in range(20):
        case = case_row(deployment, client_user, f"more-{n}", created=10 + n)
        prediction = predicted(case, model, 10.5 + n)
        task(case, ReviewTask.Reason.OUT_OF_SCOPE, 10.6 + n, claimed=10.7 + n)
        decided(case, 10.8 + n, label="1", source=Decision.Source.MODEL, prediction=prediction)

    with django_assert_num_queries(1):
        large = api.get(URL)

    assert len(small.json()["results"]) == 4
    assert len(large.json()["results"]) == 24
    assert large.json()["results"][0]["decision"]["model_version"] == "digits-v4"
