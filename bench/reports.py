"""Reports at 1,000,000 decisions: the full report page and the streamed CSV export.

Rows are written by PostgreSQL itself (INSERT ... SELECT over generate_series): 1M cases in
three regions over 30 days, a champion prediction each, 70% decided by reviewers after a
review task (10% of those disagreeing), 30% decided by the model with 5% audited.

The load marks every case for the report's rollup (database triggers); rebuilding it
(`rollup_rebuild_s`, as `manage.py report_rollup --rebuild` does after a bulk load) is
faster than folding a million marked cases.

Figures, all in one run on one database:
- report_s_1m: GET of the whole report page through Django's test client (median of 3,
  after one warm-up), against a plain COUNT(*) of the decisions (baseline);
- report_s_1m_pending: the same with 1,000 cases written since the last fold (the page
  corrects the rollup for them from the live rows), and fold_cases_per_s: folding them;
- export_rows_per_s: the CSV export streamed through the view, against psycopg's
  COPY (SELECT ...) TO STDOUT of the same columns (baseline);
- export_peak_rss_mb: growth of the process's peak resident memory while exporting.
Writes bench/results/reports.json.

`--keep` keeps the test database (`test_<name>`) and its 1M decisions for the next run with
`--keep`, which migrates it and skips the load: for iterating on one PostgreSQL server that
outlives the run (scripts/with-services.sh removes its server at exit).
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from bench.harness import ROOT, django_test_database, results_write

N = 1_000_000


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _populate(cursor, *, deployment_id: int, regions: list[int], user_id: int,
              reviewer_id: int, champion_id: int, shadow_pv: int, full_pv: int) -> None:
    start = datetime(2026, 4, 1, tzinfo=UTC)
    params = {"d": deployment_id, "r": regions, "u": user_id, "n": N, "start": start,
              "rev": reviewer_id, "mv": champion_id, "pv1": shadow_pv, "pv2": full_pv}
    cursor.execute("""
        INSERT INTO reviewplatform_case (deployment_id, region_id, external_id, image,
            image_sha256, width, height, captured_at, metadata, submitted_by_id, status,
            created_at, updated_at)
        SELECT %(d)s, (%(r)s::bigint[])[1 + g %% 3], 'b-' || g, 'cases/b.png', '0', 8, 8,
               %(start)s + g * interval '2.592 seconds', '{}'::jsonb, %(u)s, 'decided',
               now(), now()
        FROM generate_series(1, %(n)s) AS g""", params)
    cursor.execute("""
        INSERT INTO inference_prediction (case_id, model_version_id, status, label,
            confidence, probabilities, out_of_domain, ood_reasons, error, latency_ms,
            created_at)
        SELECT c.id, %(mv)s, 'ok', ((c.id * 7) %% 10)::text, 0.5 + (c.id %% 50) / 100.0,
               '{}'::jsonb, c.id %% 37 = 0, '[]'::jsonb, '', 40, now()
        FROM reviewplatform_case AS c WHERE c.deployment_id = %(d)s""", params)
    cursor.execute("""
        INSERT INTO reviewplatform_reviewtask (case_id, reason, urgent, reason_rank, priority,
            status, claimed_by_id, claimed_at, policy_version_id, rule, blind_answer,
            created_at, completed_at)
        SELECT c.id, CASE WHEN c.id %% 10 < 7 THEN 'shadow' ELSE 'audit' END, false, 0, 0,
               'done', %(rev)s, c.captured_at + (c.id %% 30) * interval '1 minute',
               CASE WHEN c.id %% 10 < 7 THEN %(pv1)s ELSE %(pv2)s END, '', '',
               c.captured_at, c.captured_at + interval '40 minutes'
        FROM reviewplatform_case AS c
        WHERE c.deployment_id = %(d)s AND (c.id %% 10 < 7 OR c.id %% 20 = 7)""", params)
    cursor.execute("""
        INSERT INTO reviewplatform_review (task_id, case_id, reviewer_id, answer, mode,
            blind_answer, seconds, created_at)
        SELECT t.id, t.case_id, %(rev)s,
               CASE WHEN t.case_id %% 10 = 0 THEN ((t.case_id * 7 + 1) %% 10)::text
                    ELSE ((t.case_id * 7) %% 10)::text END,
               'blind', '', 5 + t.case_id %% 20, t.completed_at
        FROM reviewplatform_reviewtask AS t JOIN reviewplatform_case AS c ON c.id = t.case_id
        WHERE c.deployment_id = %(d)s""", params)
    cursor.execute("""
        INSERT INTO reviewplatform_decision (case_id, label, source, policy_version_id, rule,
            review_id, prediction_id, decided_at)
        SELECT c.id,
               CASE WHEN c.id %% 10 < 7 THEN r.answer ELSE p.label END,
               CASE WHEN c.id %% 10 < 7 THEN 'human' ELSE 'model' END,
               CASE WHEN c.id %% 10 < 7 THEN %(pv1)s ELSE %(pv2)s END, '',
               CASE WHEN c.id %% 10 < 7 THEN r.id END,
               CASE WHEN c.id %% 10 < 7 THEN NULL ELSE p.id END,
               c.captured_at + interval '1 hour'
        FROM reviewplatform_case AS c
        JOIN inference_prediction AS p ON p.case_id = c.id
        LEFT JOIN reviewplatform_review AS r ON r.case_id = c.id
        WHERE c.deployment_id = %(d)s""", params)
    cursor.execute("ANALYZE")


@contextmanager
def _kept_test_database() -> Iterator[None]:
    """Django on the test database, created or migrated, and left in place afterwards."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewplatform.settings.test")
    os.environ.setdefault("SECRET_KEY", "bench")
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=True)
    yield


def main() -> int:
    keep = "--keep" in sys.argv[1:]
    with _kept_test_database() if keep else django_test_database():
        from django.contrib.auth.models import User
        from django.db import connection

        from inference.models import ModelVersion
        from reviewplatform.models import Decision, Deployment
        from rollout.reports.rollup import rollup_rebuild
        from rollout.selectors import policy_current
        from rollout.services import deployment_create, policy_publish

        if keep and Deployment.objects.filter(slug="bench").exists():
            return _measure(Deployment.objects.get(slug="bench"),
                            User.objects.get(username="bench-admin"))
        admin = User.objects.create_user("bench-admin", is_staff=True, is_superuser=True)
        client_user = User.objects.create_user("bench-client")
        deployment = deployment_create(
            slug="bench", name="bench", labels=[str(i) for i in range(10)],
            regions=[("north", "North", "Europe/Oslo"), ("east", "East", "Asia/Tokyo"),
                     ("west", "West", "America/Los_Angeles")], actor=admin)
        champion = ModelVersion.objects.create(
            deployment=deployment, name="champion", sha256="0" * 64, artifact="m.pkl",
            labels=deployment.labels, is_champion=True)
        shadow = policy_current(deployment_id=deployment.pk)
        full = policy_publish(deployment=deployment, stage="full", rules=[], actor=admin,
                              reason="bench", audit_rate=0.05)
        started = time.perf_counter()
        with connection.cursor() as cursor:
            _populate(cursor, deployment_id=deployment.pk,
                      regions=list(deployment.regions.order_by("pk")
                                   .values_list("pk", flat=True)),
                      user_id=client_user.pk, reviewer_id=admin.pk, champion_id=champion.pk,
                      shadow_pv=shadow.pk, full_pv=full.pk)
        print(f"populated {Decision.objects.count():,} decisions in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        facts = rollup_rebuild()
        rebuild_s = time.perf_counter() - started
        print(f"rebuilt the report rollup ({facts:,} facts) in {rebuild_s:.1f} s", flush=True)
        return _measure(deployment, admin, rebuild_s=rebuild_s)


def _page_s(web: Any, url: str) -> tuple[float, list[float]]:
    """The median of three GETs after a warm-up, and the three timings."""
    assert web.get(url).status_code == 200  # warm-up
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        response = web.get(url)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200
    return statistics.median(timings), timings


def _measure(deployment: Any, admin: Any, rebuild_s: float | None = None) -> int:
    from django.db import connection
    from django.test import Client

    from reviewplatform.models import Decision
    from rollout.models import ReportRollup
    from rollout.reports.rollup import rollup_fold

    started = time.perf_counter()
    count = Decision.objects.filter(case__deployment=deployment).count()
    baseline_count_s = time.perf_counter() - started

    rollup_fold()
    web = Client()
    web.force_login(admin)
    url = f"/deployments/{deployment.slug}/report/"
    report_s, timings = _page_s(web, url)

    with connection.cursor() as cursor:  # 1,000 cases written since the last fold
        cursor.execute("""INSERT INTO rollout_reportpending (case_id)
            SELECT id FROM reviewplatform_case WHERE deployment_id = %s AND id %% 997 = 0
            LIMIT 1000""", [deployment.pk])
        pending = cursor.rowcount
    pending_s, _ = _page_s(web, url)
    started = time.perf_counter()
    folded = rollup_fold()
    fold_s = time.perf_counter() - started

    rss_before = _peak_rss_mb()
    started = time.perf_counter()
    response = web.get(f"/deployments/{deployment.slug}/report/decisions.csv")
    rows = sum(chunk.count(b"\n") for chunk in response.streaming_content) - 1
    export_s = time.perf_counter() - started
    rss_growth = _peak_rss_mb() - rss_before
    assert rows == count, (rows, count)

    started = time.perf_counter()
    copied = 0
    with connection.cursor() as cursor:
        raw = cursor.connection.cursor()
        with raw.copy("""COPY (SELECT d.case_id, c.external_id, r.code, c.captured_at,
                d.decided_at, d.label, d.source, pv.version, pv.stage, d.rule, p.label,
                p.confidence, p.out_of_domain
            FROM reviewplatform_decision d JOIN reviewplatform_case c ON c.id = d.case_id
            JOIN reviewplatform_region r ON r.id = c.region_id
            JOIN rollout_policyversion pv ON pv.id = d.policy_version_id
            LEFT JOIN inference_prediction p ON p.case_id = c.id
            ORDER BY d.id) TO STDOUT WITH CSV""") as copy:
            for block in copy:
                copied += bytes(block).count(b"\n")
    copy_s = time.perf_counter() - started

    results_write("reports", {
        "decisions": count,
        "report_s_1m": round(report_s, 3),
        "report_runs_s": [round(t, 3) for t in timings],
        "rollup_rows": ReportRollup.objects.count(),
        "rollup_rebuild_s": round(rebuild_s, 1) if rebuild_s is not None else None,
        "report_s_1m_pending": round(pending_s, 3),
        "pending_cases": pending,
        "fold_cases_per_s": round(folded / fold_s),
        "baseline_count_s": round(baseline_count_s, 3),
        "ratio_report_vs_count": round(report_s / baseline_count_s, 1),
        "export_rows_per_s": round(rows / export_s),
        "baseline_copy_rows_per_s": round(copied / copy_s),
        "ratio_export_vs_copy": round((rows / export_s) / (copied / copy_s), 3),
        "export_peak_rss_mb": round(rss_growth, 1),
        "targets": "report_s_1m <= 1; export_rows_per_s >= 50000; export_peak_rss_mb flat "
                   "(independent of the number of rows)",
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
