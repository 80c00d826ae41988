"""PostgreSQL is stopped and started again while clients submit cases: the web server, the
workers and beat recover by themselves; a request that came while the database was away is
answered `503` with `Retry-After` and the API's envelope, never a 500 page; every case
answered `201` is predicted and routed."""

from __future__ import annotations

import json
import time

import pytest
from django.db import connection

from reviewplatform.models import Case

from .platform import Clients, postgres_start, postgres_stop
from .reconcile import reconcile

pytestmark = pytest.mark.faults
RATE = 8.0
DOWN_S = 5


def test_requests_during_a_postgres_restart_get_503_and_everything_recovers(
        platform, champion, model_decides, api_key, digit_images, faults_record):
    platform.start("web", "worker", "beat")
    with Clients(url=platform.url, key=api_key, images=digit_images, rate=RATE,
                 prefix="pg") as clients:
        time.sleep(8)
        connection.close()
        stopped = time.monotonic()
        postgres_stop()
        time.sleep(DOWN_S)
        postgres_start()
        down = time.monotonic() - stopped
        time.sleep(10)
    statuses = clients.statuses()
    others = clients.others()
    assert {a.status for a in others} <= {503}, [(a.status, a.body[:300]) for a in others[:3]]
    for answer in others:
        assert json.loads(answer.body)["code"] == "unavailable"

    # The cases answered 201, and any answered 503 whose row was committed before the outage
    # reached the answer: every one is carried through.
    refused = [a.external_id for a in others]
    stored_anyway = list(Case.objects.filter(external_id__in=refused)
                         .values_list("external_id", flat=True))
    ids = clients.stored() + stored_anyway
    deadline = time.monotonic() + 180
    waiting = Case.objects.filter(external_id__in=ids, status=Case.Status.RECEIVED)
    while waiting.exists():
        assert time.monotonic() < deadline, f"{waiting.count()} cases wait:\n{platform.logs()}"
        time.sleep(1)
    for name in ("web", "worker", "beat"):
        assert platform.running[name].poll() is None, f"{name} exited:\n{platform.logs()}"
    faults_record(reconcile(
        fault="PostgreSQL restarted under load", deployment=champion.deployment,
        external_ids=ids,
        notes=[f"PostgreSQL away {down:.0f} s; answers: {dict(statuses)} (503: "
               f"{len(refused)}, of which stored before the outage reached them: "
               f"{len(stored_anyway)})"]))
