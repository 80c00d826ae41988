"""The run: the scenario's events on the simulated clock, each through the platform's own services.

- arrivals: `reviewplatform.services.case_submit` (the image checked and stored, the row written);
- the worker, every `worker_seconds`: `reviewplatform.pipeline.predict_waiting` (claims, input
  statistics and out-of-domain checks, stored predictions, routing under the policy in force,
  decisions, review tasks and case events), with the simulated model's answers standing in for
  the learners' forward pass, or the real learner with `predict_with_learner`;
- reviewers: `review.services.review_claim_next` and `review_submit` (leases, the review chain,
  second opinions and escalations, human decisions);
- policy changes: `rollout.services.policy_change`, through the evidence gate, the evidence
  recorded on the version as the rollout page does;
- guardrails, every `guardrail_minutes`: `rollout.guardrails.guardrails_run(now=...)`, as beat
  runs them: a pause is a policy version, and the admins are alerted.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from review.services import review_claim_next, review_submit
from reviewplatform.errors import ServiceError
from reviewplatform.models import Deployment
from reviewplatform.pipeline import predict_waiting
from reviewplatform.services import case_submit
from rollout.guardrails import guardrails_run
from rollout.services import policy_change

from .arrivals import Arrival, arrivals_plan
from .clock import SimClock
from .model import Known, SimulatedModel
from .reviewers import SimulatedReviewer, reviewers_create, simulated_user
from .scenario import PolicyChange, Scenario, scenario_start
from .summary import Summary, summary_count

logger = logging.getLogger(__name__)

STORED = ("stored: the simulated model's answers (right with the scenario's accuracy for the "
          "case's region, local hour and drift), written through the worker's own path; "
          "the learner did not run")
PREDICTED = "predicted: the registered learner ran on every case's image"
IDLE_SECONDS = 900  # a reviewer who finds the queue empty looks again this much later
WORKER_BATCH = 64


@contextmanager
def _quiet() -> Iterator[None]:
    """The services log a line per case at INFO, thousands in a run: silenced while it runs
    (warnings, a guardrail's pause among them, still show)."""
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)


@dataclass
class Run:
    """What the run did, beyond what the database holds."""

    case_ids: list[int] = field(default_factory=list)
    truths: dict[int, Known] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    guardrail_checks: int = 0


Prepare = Callable[[Scenario], Deployment]


def simulate(scenario: Scenario, *, prepare: Prepare, images: list[Path], seed: int = 0,
             now: datetime | None = None, predict_with_learner: bool = False,
             external_prefix: str = "sim") -> Summary:
    """Run the scenario from its start to its end on the simulated clock; the summary after.

    `prepare(scenario)` runs first, at the simulated start, and returns the deployment (made
    there if it is new, so its history begins with the simulation). Case ids are
    `<external_prefix>-<start>-<n>`: running the same span again is refused as a conflict.
    """
    started = time.perf_counter()
    now = now or timezone.now()
    start = scenario_start(scenario, now=now)
    end = start + timedelta(days=scenario.days)
    rng = random.Random(seed)
    arrivals = arrivals_plan(scenario, start=start, images=images, rng=rng)
    run = Run()
    model = SimulatedModel(scenario, start=start, seed=seed, truths=run.truths)
    predict = None if predict_with_learner else model.predict
    clock = SimClock(start, end)
    first_version = 0
    with _quiet(), clock.travelling():
        deployment = prepare(scenario)
        first_version = deployment.policy_versions.order_by("-version").values_list(
            "version", flat=True).first() or 0
        admin = simulated_user("sim-admin", groups=["rollout admin", "reviewer"],
                               role="rollout admin")
        client = simulated_user("sim-client", groups=["api client"], role="API client")
        reviewers = reviewers_create(scenario, seed=seed)
        labels = [str(label) for label in deployment.labels]
        image_bytes = {path: path.read_bytes() for path in {a.image for a in arrivals}}
        waiting = [0]
        stamp = start.strftime("%Y%m%dT%H%M")

        def submit(arrival: Arrival, n: int) -> None:
            case = case_submit(
                deployment=deployment, region_code=arrival.region,
                image=SimpleUploadedFile(arrival.image.name, image_bytes[arrival.image],
                                         "image/png"),
                captured_at=arrival.captured_at, external_id=f"{external_prefix}-{stamp}-{n}",
                submitted_by=client, metadata={"simulated": scenario.name})
            run.case_ids.append(case.pk)
            run.truths[case.pk] = Known(region=arrival.region, truth=arrival.truth)
            waiting[0] += 1

        def work(when: datetime) -> None:
            if waiting[0]:
                while predict_waiting(batch_size=WORKER_BATCH, wait_ms=0, predict=predict):
                    pass
                waiting[0] = 0

        def guard(when: datetime) -> None:
            run.guardrail_checks += 1
            guardrails_run(now=when)

        def publish(change: PolicyChange) -> Callable[[datetime], None]:
            def apply(when: datetime) -> None:
                work(when)  # what has arrived is routed under the policy it arrived under
                try:
                    version = policy_change(
                        deployment=deployment, actor=admin, reason=change.reason,
                        stage=change.stage, rules=change.rules,
                        confidence_threshold=change.confidence_threshold,
                        audit_rate=change.audit_rate, override_reason=change.override_reason,
                        guardrails=change.guardrails, now=when)
                except ServiceError as exc:
                    run.refused.append(f"{when:%Y-%m-%d %H:%M} {change.stage}: {exc}")
                    return
                gate = version.evidence.get("gate", "?")
                run.published.append(f"{when:%Y-%m-%d %H:%M} v{version.version} "
                                     f"{version.stage} (evidence gate: {gate})")
            return apply

        def reviewer_wake(reviewer: SimulatedReviewer) -> Callable[[datetime], None]:
            def wake(when: datetime) -> None:
                if not reviewer.works_at(when, start=start):
                    shift = reviewer.next_shift(when, start=start)
                    if shift is not None:
                        clock.at(shift, wake)
                    return
                task = review_claim_next(reviewer=reviewer.user, now=when)
                if task is None:
                    clock.at(when + timedelta(seconds=IDLE_SECONDS), wake)
                    return
                known = run.truths.get(task.case_id)
                answer = reviewer.answer(known.truth if known else None, labels)
                token = task.lease_token
                assert token is not None

                def done(at: datetime) -> None:
                    review_submit(task_id=task.pk, lease_token=token,
                                  reviewer=reviewer.user, answer=answer, now=at)
                    reviewer.answered += 1
                    wake(at)

                clock.at(when + timedelta(seconds=reviewer.seconds()), done)
            return wake

        def arrive(arrival: Arrival, n: int) -> Callable[[datetime], None]:
            return lambda when: submit(arrival, n)

        for n, arrival in enumerate(arrivals):
            clock.at(arrival.at, arrive(arrival, n))
        for change in scenario.policy:
            clock.at(start + timedelta(days=change.day), publish(change))
        clock.every(scenario.worker_seconds, work)
        clock.every(scenario.guardrail_minutes * 60, guard,
                    first=start + timedelta(minutes=scenario.guardrail_minutes))
        for reviewer in reviewers:
            clock.at(start, reviewer_wake(reviewer))
        clock.run()
        work(end)
    return summary_count(
        scenario=scenario, deployment=deployment, run_case_ids=run.case_ids,
        truths=run.truths, start=start, end=end, first_version=first_version,
        published=run.published, refused=run.refused, guardrail_checks=run.guardrail_checks,
        reviewers={r.user.username: r.answered for r in reviewers},
        model_answers=PREDICTED if predict_with_learner else STORED, seed=seed,
        seconds=time.perf_counter() - started)
