"""The report's pre-counted rollup says what the live rows say, at every moment:
before a fold, after it, after late writes, after deletions and under concurrent folds."""

from __future__ import annotations

import dataclasses
import math
import threading
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from inference.models import Prediction
from reviewplatform.models import Case, Decision, Review, ReviewTask
from rollout.models import ReportFact, ReportKind, ReportPending, ReportRollup
from rollout.reports.precounted import report_precounted
from rollout.reports.rollup import (
    FOLD_LOCK,
    WAIT_BIN_BASE,
    pending_count,
    rollup_fold,
    rollup_rebuild,
    wait_bin_bounds,
    wait_percentiles,
)
from rollout.selectors import policy_current
from rollout.services import policy_publish
from tests import report_oracle
from tests.report_oracle import report_build_live
from tests.reports_factory import decide, second_opinion, sim_model
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures
from tests.test_reports_selectors import filters

OSLO = ZoneInfo("Europe/Oslo")
# Across the spring-forward night in Oslo (2026-03-29), day and night hours, several days.
START = datetime(2026, 3, 27, 18, 0, tzinfo=OSLO)


def same(live: Any, counted: Any, path: str = "report") -> None:
    """Field by field; floats to rounding, waiting-time percentiles to their bins' width."""
    if dataclasses.is_dataclass(live) and not isinstance(live, type):
        for f in dataclasses.fields(live):
            if f.name != "filters":
                same(getattr(live, f.name), getattr(counted, f.name), f"{path}.{f.name}")
    elif isinstance(live, dict):
        assert live.keys() == counted.keys(), path
        for key in live:
            same(live[key], counted[key], f"{path}[{key!r}]")
    elif isinstance(live, list | tuple):
        assert len(live) == len(counted), path
        for i, (a, b) in enumerate(zip(live, counted, strict=True)):
            same(a, b, f"{path}[{i}]")
    elif ".wait_p" in path and live is not None:
        assert counted == pytest.approx(live, rel=0.05, abs=1.0), path
    elif path.endswith("oldest_waiting_s") and live is not None:
        assert counted == pytest.approx(live, abs=30), path
    elif isinstance(live, float) and isinstance(counted, float):
        assert (math.isnan(live) and math.isnan(counted)) or counted == pytest.approx(
            live, rel=1e-9, abs=1e-12), path
    else:
        assert live == counted, path


def rollup_rows() -> set[tuple[Any, ...]]:
    fields = [*ReportRollup.DIMENSIONS, "n", "valued", "first", "last"]
    return {(*row[:-1], round(row[-1], 6))
            for row in ReportRollup.objects.values_list(*fields, "total")}


FILTERS = [{}, {"region": "east"}, {"from": "2026-03-28", "to": "2026-03-29"},
           {"stage": "limited"}, {"stage": "shadow", "region": "north"},
           {"reason": "low_confidence"}, {"reason": "audit"}, {"to": "2026-03-28"}]


@pytest.fixture
def world(deployment, client_user, reviewer, other_reviewer, admin_user):
    """Every kind of thing the report counts, across regions, hours, days, stages and
    reasons: human and model decisions, a challenger, audits, second opinions, answers that
    are not labels, a failed prediction, unfinished tasks, a gold task."""
    champion = sim_model(deployment, name="champion")
    challenger = sim_model(deployment, name="challenger", champion=False)

    def make(i: int, **kwargs: Any) -> Case:
        kwargs.setdefault("captured_at", START + timedelta(hours=7 * i + i % 3))
        kwargs.setdefault("region", ["north", "east"][i % 2])
        kwargs.setdefault("confidence", 0.45 + (i % 6) / 10)
        kwargs.setdefault("ood", i % 7 == 0)
        kwargs.setdefault("wait_s", 3.0 * i + 0.4)
        kwargs.setdefault("seconds", 4.0 + i % 5)
        return decide(deployment, champion, submitted_by=client_user, reviewer=reviewer,
                      **kwargs)

    for i in range(24):  # the shadow stage
        human = str(i % 10) if i % 4 else str((i + 1) % 10)
        case = make(i, model_label=str(i % 10), human="cannot_tell" if i == 5 else human,
                    reason="low_confidence" if i % 3 == 0 else "shadow")
        if i % 2:
            Prediction.objects.create(case=case, model_version=challenger, status="ok",
                                      label=str((i + i % 3) % 10), confidence=0.7)
        if i % 5 == 0:
            second_opinion(case, other_reviewer, human if i % 10 else "9")
    policy_publish(deployment=deployment, stage="limited", actor=admin_user, reason="r",
                   audit_rate=0.25, rules=[{"name": "north-day", "regions": ["north"]}])
    for i in range(24, 40):  # the model decides in north, people elsewhere
        if i % 2 == 0:
            make(i, model_label=str(i % 10), human=None, source="model", rule="north-day",
                 audit=(str(i % 10) if i % 3 else "4") if i % 4 == 0 else None)
        else:
            make(i, model_label=str(i % 10), human=str(i % 10), reason="out_of_scope")
    failed = make(40, model_label="", human="3", reason="model_failed")
    Prediction.objects.create(case=failed, model_version=champion, status="failed",
                              error="boom")
    policy = policy_current(deployment_id=deployment.pk)
    waiting = Case.objects.create(
        deployment=deployment, region=deployment.regions.get(code="north"), external_id="w",
        image="cases/w.png", image_sha256="0" * 64, width=8, height=8,
        captured_at=START + timedelta(days=1), submitted_by=client_user,
        status=Case.Status.IN_REVIEW)
    Prediction.objects.create(case=waiting, model_version=champion, status="ok", label="4",
                              confidence=0.3, out_of_domain=True)
    ReviewTask.objects.create(case=waiting, reason="paused", policy_version=policy)
    ReviewTask.objects.create(case=waiting, reason="out_of_domain", policy_version=policy,
                              status="claimed", claimed_by=reviewer,
                              claimed_at=timezone.now() + timedelta(seconds=90))
    gold = make(41, model_label="2", human="2")
    ReviewTask.objects.create(case=gold, reason="gold", policy_version=policy, status="done",
                              claimed_by=reviewer, claimed_at=timezone.now())
    return {"champion": champion, "challenger": challenger}


def check_every_filter(deployment, world) -> None:
    for params in [*FILTERS, {"model": str(world["challenger"].pk)}]:
        f = filters(deployment, **params)
        same(report_build_live(f), report_precounted(f), f"report{params}")


def test_it_reports_what_the_live_rows_say_before_and_after_a_fold(deployment, world):
    assert pending_count() > 0
    check_every_filter(deployment, world)  # nothing folded: all from the pending correction

    folded = rollup_fold(batch=7)  # several batches

    assert folded >= Case.objects.count()  # a case marked twice may fall in two batches
    assert pending_count() == 0
    assert ReportRollup.objects.filter(kind=ReportKind.PAIR).exists()
    assert ReportFact.objects.filter(kind=ReportKind.INPUT, case_id=Case.objects.get(
        external_id="w").pk).exists()  # undecided, predicted
    check_every_filter(deployment, world)
    folded_rows = rollup_rows()
    rollup_rebuild()
    assert rollup_rows() == folded_rows


def test_it_counts_writes_made_after_a_case_was_folded_once(deployment, world, other_reviewer,
                                                           reviewer):
    rollup_fold()
    automated = Decision.objects.filter(source="model", case__reviews__isnull=True).first()
    decided = Decision.objects.filter(source="human").exclude(
        case__predictions__model_version=world["challenger"]).first()
    # An audit of a model decision, a late challenger prediction, a second opinion.
    task = ReviewTask.objects.create(case=automated.case, reason="audit", status="done",
                                     policy_version=automated.policy_version,
                                     claimed_by=reviewer, claimed_at=timezone.now())
    Review.objects.create(task=task, case=automated.case, reviewer=reviewer, answer="0",
                          seconds=3)
    Prediction.objects.create(case=decided.case, model_version=world["challenger"],
                              status="ok", label=decided.label, confidence=0.6)
    second_opinion(decided.case, other_reviewer, "0")

    assert pending_count() >= 3
    check_every_filter(deployment, world)
    rollup_fold()
    check_every_filter(deployment, world)
    ReportPending.objects.bulk_create(ReportPending(case_id=c) for c in
                                      Case.objects.values_list("pk", flat=True))
    rollup_fold()  # folding everything again changes nothing
    check_every_filter(deployment, world)


def test_it_takes_a_deleted_case_out(deployment, world):
    rollup_fold()
    case = Decision.objects.filter(source="human").first().case
    before = report_oracle.headline(filters(deployment)).agreement.n

    Decision.objects.filter(case=case).delete()
    case.delete()
    rollup_fold()

    assert not ReportFact.objects.filter(case_id=case.pk).exists()
    assert report_precounted(filters(deployment)).headline.agreement.n == before - 1
    check_every_filter(deployment, world)


def test_it_marks_a_case_when_its_rows_change_but_not_when_a_task_is_claimed(
        deployment, make_report_case, reviewer):
    case = make_report_case()
    ReportPending.objects.all().delete()
    task = ReviewTask.objects.create(case=case, reason="shadow",
                                     policy_version=policy_current(deployment_id=deployment.pk))
    ReviewTask.objects.filter(pk=task.pk).update(status="claimed", claimed_by=reviewer,
                                                 claimed_at=timezone.now())
    ReviewTask.objects.filter(pk=task.pk).update(status="open", claimed_by=None,
                                                 claimed_at=None)
    assert pending_count() == 0  # creating, claiming and releasing an unfinished task

    ReviewTask.objects.filter(pk=task.pk).update(status="done", claimed_at=timezone.now())
    assert list(ReportPending.objects.values_list("case_id", flat=True)) == [case.pk]


@pytest.fixture
def make_report_case(deployment, client_user):
    def make() -> Case:
        return Case.objects.create(
            deployment=deployment, region=deployment.regions.get(code="north"),
            external_id=f"m-{Case.objects.count()}", image="cases/m.png", image_sha256="0",
            width=8, height=8, captured_at=START, submitted_by=client_user)
    return make


def test_the_page_reads_the_folded_rollup(deployment, world, admin_user, client):
    rollup_fold()
    client.force_login(admin_user)

    response = client.get(f"/deployments/{deployment.slug}/report/?region=east")

    assert response.status_code == 200
    live = report_oracle.headline(filters(deployment, region="east")).agreement
    page = response.content.decode()
    assert live.n and f'id="agreement-n">n = {live.n}<' in page
    predicted = sum(d.predicted for d in report_oracle.inputs(filters(deployment, region="east")))
    assert 'id="inputs-by-day"' in page and predicted > live.n


def test_beat_folds_often_and_the_command_folds_or_rebuilds(deployment, world, capsys):
    schedule = {entry["task"]: entry["schedule"]
                for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert schedule["rollout.tasks.report_rollup_fold"] <= 30

    call_command("report_rollup")
    assert "pending" in capsys.readouterr().out and pending_count() == 0
    folded = rollup_rows()
    call_command("report_rollup", "--rebuild")
    assert "rebuilt" in capsys.readouterr().out
    assert rollup_rows() == folded


@given(st.lists(st.floats(min_value=0, max_value=3e6, allow_nan=False), min_size=1,
                max_size=60),
       st.sampled_from([0.0, 0.1, 0.5, 0.9, 0.99, 1.0]))
def test_binned_percentiles_stay_within_a_bin_of_percentile_cont(waits, p):
    def bin_of(w: float) -> int:
        return 0 if w < 1 else 1 + math.floor(math.log(w) / math.log(WAIT_BIN_BASE))

    bins: dict[int, int] = {}
    for w in waits:
        bins[bin_of(w)] = bins.get(bin_of(w), 0) + 1
    ordered = sorted(waits)
    rank = p * (len(waits) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(waits) - 1)
    exact = ordered[low] + (rank - low) * (ordered[high] - ordered[low])

    estimate = wait_percentiles(bins, [p])[f"p{int(p * 100)}"]

    assert estimate == pytest.approx(exact, rel=WAIT_BIN_BASE - 1, abs=1.0)
    assert wait_bin_bounds(0) == (0.0, 1.0)


@pytest.mark.django_db(transaction=True)
def test_folds_running_alongside_reviewers_lose_and_double_nothing(
        deployment, client_user, make_case, stored_champion):
    from django.contrib.auth.models import Group, User

    from review.services import review_claim_next, review_submit, review_task_create

    policy = policy_current(deployment_id=deployment.pk)
    for _ in range(60):
        review_task_create(case=make_case(), reason="shadow", policy_version=policy)
    reviewers = [User.objects.create_user(f"rv{i}") for i in range(4)]
    for user in reviewers:
        user.groups.add(Group.objects.get(name="reviewer"))
    done = threading.Event()
    errors: list[BaseException] = []

    def work(reviewer: User) -> None:
        from django.db import connection as own

        try:
            while (task := review_claim_next(reviewer=reviewer)) is not None:
                review_submit(task_id=task.pk, lease_token=task.lease_token,
                              reviewer=reviewer, answer=str(task.pk % 10))
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    def fold() -> None:
        from django.db import connection as own

        try:
            while not done.is_set():
                rollup_fold(batch=5)
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    folders = [threading.Thread(target=fold) for _ in range(2)]
    workers = [threading.Thread(target=work, args=(r,)) for r in reviewers]
    for thread in folders + workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=120)
    done.set()
    for thread in folders:
        thread.join(timeout=60)
    rollup_fold()

    assert not errors, errors
    assert Decision.objects.count() == 60
    folded = rollup_rows()
    rollup_rebuild()
    assert rollup_rows() == folded
    f = filters(deployment)
    same(report_build_live(f), report_precounted(f))


def test_it_recounts_cases_when_what_they_are_counted_with_changes(deployment, world):
    rollup_fold()
    case = Decision.objects.filter(source="human", case__region__code="north").first().case
    Case.objects.filter(pk=case.pk).update(region=deployment.regions.get(code="east"))
    Case.objects.filter(pk=case.pk).update(status=Case.Status.DECIDED)  # marks nothing more
    assert list(ReportPending.objects.values_list("case_id", flat=True)) == [case.pk]
    rollup_fold()
    check_every_filter(deployment, world)

    east = deployment.regions.get(code="east")
    east.timezone = "America/Los_Angeles"  # every east case's local hour and day move
    east.save()
    assert pending_count() == Case.objects.filter(region=east).count()
    check_every_filter(deployment, world)
    rollup_fold()
    check_every_filter(deployment, world)

    deployment.labels = [*deployment.labels[:-1]]  # "9" is no longer a label
    deployment.save()
    assert pending_count() == Case.objects.filter(deployment=deployment).count()
    rollup_fold()
    check_every_filter(deployment, world)


@pytest.mark.django_db(transaction=True)
def test_beats_fold_leaves_the_work_to_a_fold_already_running(deployment, world):
    from rollout.tasks import report_rollup_fold

    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        from django.db import connection as own
        from django.db import transaction

        with transaction.atomic(), own.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [FOLD_LOCK])
            started.set()
            release.wait(timeout=30)
        own.close()

    holder = threading.Thread(target=hold)
    holder.start()
    started.wait(timeout=30)
    try:
        assert report_rollup_fold() == 0  # returns at once instead of waiting for the lock
        assert pending_count() > 0
    finally:
        release.set()
        holder.join(timeout=30)
    assert rollup_fold(seconds=0) == 0 and pending_count() > 0  # no time for a batch
    assert report_rollup_fold() > 0
    assert pending_count() == 0
