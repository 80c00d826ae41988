"""Review queue: claim-next + submit latency with 1,000 and with 1,000,000 waiting tasks.

One operation is what a reviewer's answer costs the database: `review_claim_next` (the serving
order down the partial index of open tasks, FOR UPDATE SKIP LOCKED, the lease) followed by
`review_submit` (the fenced answer, the Review, the Decision). The waiting tasks are bulk-inserted
with INSERT ... SELECT generate_series, with a mix of reasons, urgency and ages; eight
reviewers take turns.
Writes bench/results/queue.json: p50_ms_1k, p95_ms_1k, p50_ms_1m, p95_ms_1m, p95_ratio_1m_vs_1k;
with them, as a same-run baseline, the median and p95 of a bare `SELECT 1` round trip measured
just before each size, and the number of statements one operation sends.
Needs PostgreSQL (`make bench` starts one).
"""

from __future__ import annotations

import statistics
import sys
import time

from bench.harness import django_test_database, results_write

MEASURED = 400
WARM_UP = 50
REVIEWERS = 8


def insert_waiting(n: int, *, deployment_id: int, region_id: int, user_id: int,
                   policy_id: int, tag: str) -> None:
    """n cases in review, each with an open shadow/low-confidence/out-of-domain task."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO reviewplatform_case (deployment_id, region_id, external_id, image,
                image_sha256, width, height, captured_at, metadata, submitted_by_id, status,
                created_at, updated_at)
            SELECT %s, %s, %s || g, 'cases/bench.png', repeat('0', 64), 32, 32,
                   now() - g * interval '1 second', '{}', %s, 'in_review', now(), now()
            FROM generate_series(1, %s) AS g
            """, [deployment_id, region_id, f"{tag}-", user_id, n])
        cursor.execute(
            """
            INSERT INTO reviewplatform_reviewtask (case_id, reason, urgent, reason_rank,
                priority, status, policy_version_id, rule, blind_answer, created_at)
            SELECT c.id,
                   (ARRAY['shadow', 'low_confidence', 'out_of_domain'])[(1 + c.id %% 3)::int],
                   c.id %% 97 = 0,
                   (ARRAY[20, 30, 40])[(1 + c.id %% 3)::int],
                   0, 'open', %s, '', '', now() - (c.id %% 86400) * interval '1 second'
            FROM reviewplatform_case c WHERE c.external_id LIKE %s
            """, [policy_id, f"{tag}-%"])
    # Measure the queue, not the aftermath of the bulk load: vacuum and statistics now, and
    # the load's dirty pages written out, rather than by background workers mid-measurement.
    with connection.cursor() as cursor:
        for table in ["reviewplatform_case", "reviewplatform_reviewtask", "reviewplatform_review"]:
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        cursor.execute("CHECKPOINT")


def measure(reviewers: list) -> list[float]:
    from review.services import review_claim_next, review_submit

    timings = []
    for i in range(WARM_UP + MEASURED):
        reviewer = reviewers[i % len(reviewers)]
        started = time.perf_counter()
        task = review_claim_next(reviewer=reviewer)
        assert task is not None, "the queue ran dry"
        review_submit(task_id=task.pk, lease_token=task.lease_token, reviewer=reviewer,
                      answer=str(i % 10))
        if i >= WARM_UP:
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def round_trips_ms(n: int = 300) -> list[float]:
    """Bare `SELECT 1` round trips through Django: the floor under every statement above."""
    from django.db import connection

    timings = []
    with connection.cursor() as cursor:
        for _ in range(n):
            started = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def statements_per_operation(reviewer) -> int:
    """The statements one claim-next + submit sends, as Django counts them (a BEGIN or COMMIT
    is not counted; savepoints are)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from review.services import review_claim_next, review_submit

    with CaptureQueriesContext(connection) as queries:
        task = review_claim_next(reviewer=reviewer)
        assert task is not None, "the queue ran dry"
        review_submit(task_id=task.pk, lease_token=task.lease_token, reviewer=reviewer,
                      answer="0")
    return len(queries.captured_queries)


def claim_plan(reviewer) -> str:
    """EXPLAIN ANALYZE of the claim statement itself (rolled back: nothing is claimed)."""
    import uuid
    from datetime import timedelta

    from django.conf import settings
    from django.db import connection, transaction
    from django.utils import timezone

    from review.claims import _claim_sql
    from review.rules import ESCALATION_PERM

    now = timezone.now()
    params = {"reviewer": reviewer.pk, "senior": reviewer.has_perm(ESCALATION_PERM),
              "skipped": [], "now": now, "until": now + timedelta(minutes=5),
              "token": uuid.uuid4(), "rank_first": True,
              "audit_due": now - timedelta(seconds=settings.AUDIT_SERVE_WITHIN_SECONDS)}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + _claim_sql(skipped=False), params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        transaction.set_rollback(True)
    return plan


def main() -> int:
    with django_test_database():
        from django.contrib.auth.models import Group, User

        from rollout.selectors import policy_current
        from rollout.services import deployment_create

        deployment = deployment_create(
            slug="bench", name="bench", labels=[str(i) for i in range(10)],
            regions=[("north", "North", "Europe/Oslo")], actor=None)
        client = User.objects.create_user("bench-client")
        group = Group.objects.get(name="reviewer")
        reviewers = []
        for i in range(REVIEWERS):
            user = User.objects.create_user(f"bench-reviewer-{i}")
            user.groups.add(group)
            reviewers.append(User.objects.get(pk=user.pk))
        ids = {"deployment_id": deployment.pk, "region_id": deployment.regions.get().pk,
               "user_id": client.pk, "policy_id": policy_current(deployment_id=deployment.pk).pk}

        figures = {}
        waiting = 0
        for size, label in [(1_000, "1k"), (1_000_000, "1m")]:
            started = time.perf_counter()
            # Keep `size` tasks waiting throughout the measurement.
            insert_waiting(size - waiting + WARM_UP + MEASURED, tag=f"bench-{label}", **ids)
            print(f"{size:,} waiting tasks inserted in {time.perf_counter() - started:.1f} s",
                  flush=True)
            floor = round_trips_ms()
            figures[f"select_1_p50_ms_{label}"] = round(statistics.median(floor), 3)
            figures[f"select_1_p95_ms_{label}"] = round(percentile(floor, 95), 3)
            timings = measure(reviewers)
            waiting = size
            figures[f"p50_ms_{label}"] = round(statistics.median(timings), 2)
            figures[f"p95_ms_{label}"] = round(percentile(timings, 95), 2)
            print(f"{label}: p50 {figures[f'p50_ms_{label}']} ms, "
                  f"p95 {figures[f'p95_ms_{label}']} ms (SELECT 1: p50 "
                  f"{figures[f'select_1_p50_ms_{label}']} ms, p95 "
                  f"{figures[f'select_1_p95_ms_{label}']} ms)", flush=True)
        print("claim-next plan with 1,000,000 waiting:\n" + claim_plan(reviewers[1]), flush=True)
        figures["p95_ratio_1m_vs_1k"] = round(figures["p95_ms_1m"] / figures["p95_ms_1k"], 3)
        figures["statements_per_claim_and_submit"] = statements_per_operation(reviewers[2])
        figures["targets"] = "p95_ms_1m <= 10; p95_ratio_1m_vs_1k <= 1.5"
        results_write("queue", {key: figures[key] for key in sorted(figures, key=_key_order)})
    return 0


def _key_order(key: str) -> tuple[int, str]:
    """The issue's five figures first, the baselines after."""
    required = ["p50_ms_1k", "p95_ms_1k", "p50_ms_1m", "p95_ms_1m", "p95_ratio_1m_vs_1k"]
    return (required.index(key), "") if key in required else (len(required), key)


if __name__ == "__main__":
    sys.exit(main())
