"""Redis stops for 30 s while clients submit cases at a steady rate: the API keeps answering
`201` (the case row is the truth; its prediction job could not be queued), and once Redis is
back every case is predicted and routed with no manual step (beat's sweep re-queues them)."""

from __future__ import annotations

import time

import pytest

from reviewplatform.models import Case

from .platform import Clients
from .reconcile import reconcile

pytestmark = pytest.mark.faults
RATE = 8.0  # cases/s offered
DOWN_S = 30


def test_the_api_takes_cases_while_redis_is_down_and_they_are_predicted_after(
        platform, redis_server, champion, model_decides, api_key, digit_images,
        faults_record):
    platform.start("web", "worker", "beat")
    with Clients(url=platform.url, key=api_key, images=digit_images, rate=RATE,
                 prefix="redis") as clients:
        time.sleep(8)
        before = clients.sent()
        redis_server.stop()
        stopped = time.monotonic()
        time.sleep(DOWN_S)
        during = clients.sent() - before
        redis_server.start()
        down = time.monotonic() - stopped
        time.sleep(8)
    statuses = clients.statuses()
    slow = sorted(a.seconds for a in clients.answers)[int(0.95 * len(clients.answers))]
    assert not clients.others(), (statuses, clients.others()[:3])
    assert during >= RATE * DOWN_S * 0.5, f"only {during} requests while Redis was down"

    ids = clients.stored()
    deadline = time.monotonic() + 180
    waiting = Case.objects.filter(external_id__in=ids, status=Case.Status.RECEIVED)
    while waiting.exists():
        assert time.monotonic() < deadline, f"{waiting.count()} cases wait:\n{platform.logs()}"
        time.sleep(1)
    faults_record(reconcile(
        fault="Redis stopped for 30 s during intake", deployment=champion.deployment,
        external_ids=ids,
        notes=[f"Redis down {down:.0f} s; {during} cases submitted meanwhile, all answered "
               f"201; answers: {dict(statuses)}; p95 answer {slow:.2f} s"]))
