"""A case's journey, wired above the apps it joins: predict → route (intake is `intake`).

The apps below know nothing of each other's place in it: `inference` claims and predicts a
case, `rollout.routes` says who decides it, and `reviewplatform.lifecycle` writes the outcome.
The review queue takes it from there.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from django.conf import settings

from inference import services as inference
from rollout.routes import cases_routes

from . import lifecycle


def cases_predict(*, case_ids: Sequence[int], predict: inference.Predict | None = None
                  ) -> None:
    """Predict claimed cases, route them, and release the claims of those routed (a case left
    waiting keeps its claim until it goes stale, so it is not retried at once). `predict`
    stands in for the learners (a simulation's answers)."""
    predicted = inference.predictions_make(case_ids=case_ids, predict=predict)
    routed = lifecycle.cases_route(
        case_ids=predicted.waiting,
        router=lambda cases: cases_routes(cases, predicted=predicted.stored))
    inference.claims_release(case_ids=routed)


def predict_waiting(*, batch_size: int | None = None, wait_ms: int | None = None,
                    predict: inference.Predict | None = None) -> int:
    """Claim a batch of waiting cases, predict them and route them; returns how many.

    Takes what is waiting, then keeps topping the batch up until it is full or `wait_ms` has
    passed, so that a burst of cases shares one forward pass per model.
    """
    size = batch_size or settings.INFERENCE_BATCH_SIZE
    wait = (settings.INFERENCE_BATCH_WAIT_MS if wait_ms is None else wait_ms) / 1000
    ids = inference.cases_claim(limit=size)
    if not ids:
        return 0
    deadline = time.monotonic() + wait
    while len(ids) < size and time.monotonic() < deadline:
        time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
        ids += inference.cases_claim(limit=size - len(ids))
    cases_predict(case_ids=ids, predict=predict)
    return len(ids)


def case_predict(*, case_id: int) -> None:
    """Predict and route one case now, if it is still waiting and nobody else holds it."""
    ids = inference.cases_claim(limit=1, case_ids=[case_id])
    if ids:
        cases_predict(case_ids=ids)


def case_route(*, case_id: int) -> None:
    """Route one predicted case now (its predictions are stored; a replay, say)."""
    lifecycle.cases_route(case_ids=[case_id], router=cases_routes)
