"""The report's pre-counted figures: how the page stays fast at a million decisions.

Every case contributes a few fact rows (`ReportFact`, one per what it counts: see
`ReportKind`), and `ReportRollup` holds their sums per distinct set of dimensions. The page
groups a few thousand rollup rows instead of joining a million decisions.

Keeping it exact:
- database triggers (migration 0005) add a `ReportPending` row for a case in the same
  transaction as any write to its decision, predictions or reviews, a task finishing, or a
  change to what its facts are counted with (its region, deployment or capture time; the
  region's time zone; the deployment's labels);
- `rollup_fold` (beat, every few seconds) takes pending cases, removes their old facts from
  the rollup and adds their facts as they are now: folding a case again is harmless, and the
  order of writes does not matter (a prediction arriving after the decision is counted);
- the page reads the rollup, corrected for the cases still pending (`rollup_corrected`):
  their stored facts out, their facts as the live rows say now in; exact even between folds;
- `rollup_rebuild` (`manage.py report_rollup --rebuild`) recomputes everything: after a
  change of the server's TIME_ZONE, a restore that disabled triggers, or an upgrade that
  changes what is counted; and faster than folding after a bulk load.

The waiting times of the workload are counted in logarithmic bins 5% wide, so their
percentiles are estimates (within 5%, or 1 s below 20 s); every other figure is exact.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from ..models import ReportCounted, ReportKind
from .figures import AUDIT_RATE_SCALE, CONFIDENCE_BINS

# Folds take this advisory lock, so that two never work on the same case at once.
FOLD_LOCK = 0x5245504F  # "REPO"
WAIT_BIN_BASE = 1.05

_TYPES = {
    "case_id": "bigint", "captured": "timestamptz", "kind": "smallint",
    "deployment_id": "bigint", "region_id": "bigint", "day": "date", "local_day": "date",
    "hour": "smallint", "policy_version_id": "bigint", "reason": "varchar",
    "source": "varchar", "rule": "varchar", "model_version_id": "bigint",
    "other_version_id": "bigint", "label": "varchar", "other_label": "varchar",
    "bin": "smallint", "compared": "boolean", "agreed": "boolean", "other_agreed": "boolean",
    "ood": "boolean", "n": "bigint", "valued": "bigint", "total": "double precision",
}
FACT_COLUMNS = ("case_id", "captured", *ReportCounted.DIMENSIONS, *ReportCounted.MEASURES)
DIMENSIONS = ", ".join(ReportCounted.DIMENSIONS)


def wait_bin_sql(wait: str) -> str:
    """The waiting-time bin of an interval expression: 0 below a second, then bins 5% wide."""
    seconds = f"EXTRACT(EPOCH FROM {wait})"
    return (f"CASE WHEN {wait} IS NULL THEN NULL WHEN {seconds} < 1 THEN 0 "
            f"ELSE 1 + FLOOR(LN({seconds}) / LN({WAIT_BIN_BASE}))::int END")


def wait_bin_bounds(b: int) -> tuple[float, float]:
    """The seconds a waiting-time bin covers, [low, high)."""
    if b <= 0:
        return 0.0, 1.0
    return WAIT_BIN_BASE ** (b - 1), WAIT_BIN_BASE ** b


def _branch(kind: ReportKind, rows: str, **columns: str) -> str:
    """One kind of fact as a SELECT of every fact column; the ones it does not set are NULL."""
    columns = {"case_id": "c.case_id", "captured": "c.captured", "kind": str(int(kind)),
               "deployment_id": "c.deployment_id", "region_id": "c.region_id", "day": "c.day",
               "n": "1", "valued": "0", "total": "0", **columns}
    values = ", ".join(f"({columns.get(name, 'NULL')})::{_TYPES[name]} AS {name}"
                       for name in FACT_COLUMNS)
    return f"SELECT {values} FROM {rows}"


_LOCAL = {"local_day": "c.local::date", "hour": "EXTRACT(HOUR FROM c.local)"}
_ROUTED = {"policy_version_id": "d.policy_version_id", "reason": "d.reason"}
_P_BY_HOUR = {**_LOCAL, **_ROUTED, "source": "d.source", "model_version_id": "p.model_version_id",
              "compared": "p.compared", "agreed": "p.compared AND d.label = p.label",
              "ood": "p.out_of_domain", "valued": "(p.confidence IS NOT NULL)::int",
              "total": "COALESCE(p.confidence, 0)"}

_FACTS_SQL = """
WITH c AS (
    SELECT c.id AS case_id, c.deployment_id, c.region_id, c.captured_at AS captured,
           (c.captured_at AT TIME ZONE %(server_zone)s)::date AS day,
           c.captured_at AT TIME ZONE r.timezone AS local
    FROM reviewplatform_case AS c JOIN reviewplatform_region AS r ON r.id = c.region_id
    WHERE {cases}
), d AS (
    SELECT c.case_id, d.label, d.source, d.policy_version_id, d.rule, t.reason,
           d.source = 'human' AND jsonb_exists(dep.labels, d.label) AS human_labelled
    FROM c JOIN reviewplatform_decision AS d ON d.case_id = c.case_id
    JOIN reviewplatform_deployment AS dep ON dep.id = c.deployment_id
    LEFT JOIN reviewplatform_review AS rv ON rv.id = d.review_id
    LEFT JOIN reviewplatform_reviewtask AS t ON t.id = rv.task_id
), p AS (
    SELECT p.case_id, p.model_version_id, p.label, p.confidence, p.out_of_domain,
           d.human_labelled AND p.label IS NOT NULL AS compared
    FROM d JOIN inference_prediction AS p ON p.case_id = d.case_id AND p.status = 'ok'
)
""" + "\nUNION ALL\n".join([
    _branch(ReportKind.VOLUME, "c JOIN d ON d.case_id = c.case_id",
            **_LOCAL, **_ROUTED, source="d.source"),
    _branch(ReportKind.DECISION, "c JOIN d ON d.case_id = c.case_id",
            **_ROUTED, source="d.source", rule="d.rule", label="d.label"),
    _branch(ReportKind.MODEL,
            "c JOIN d ON d.case_id = c.case_id JOIN p ON p.case_id = c.case_id", **_P_BY_HOUR),
    _branch(ReportKind.CONFUSION,
            "c JOIN d ON d.case_id = c.case_id JOIN p ON p.case_id = c.case_id AND p.compared",
            **_ROUTED, model_version_id="p.model_version_id", label="d.label",
            other_label="p.label",
            bin=f"LEAST(FLOOR(p.confidence * {CONFIDENCE_BINS})::int, {CONFIDENCE_BINS - 1})",
            valued="(p.confidence IS NOT NULL)::int", total="COALESCE(p.confidence, 0)"),
    _branch(ReportKind.PAIR,
            "c JOIN d ON d.case_id = c.case_id JOIN p ON p.case_id = c.case_id AND p.compared"
            " JOIN inference_prediction AS o ON o.case_id = c.case_id AND o.status = 'ok'"
            " AND o.model_version_id <> p.model_version_id AND o.label IS NOT NULL",
            **_ROUTED, model_version_id="p.model_version_id",
            other_version_id="o.model_version_id", agreed="d.label = p.label",
            other_agreed="d.label = o.label"),
    _branch(ReportKind.AUDIT,
            "c JOIN reviewplatform_review AS rv ON rv.case_id = c.case_id"
            " JOIN reviewplatform_reviewtask AS t ON t.id = rv.task_id AND t.reason = 'audit'"
            " JOIN reviewplatform_decision AS d ON d.case_id = c.case_id AND d.source = 'model'",
            policy_version_id="t.policy_version_id", agreed="rv.answer = d.label",
            bin=f"ROUND(t.audit_rate * {AUDIT_RATE_SCALE})::int"),
    _branch(ReportKind.SECOND,
            "c JOIN reviewplatform_review AS rv ON rv.case_id = c.case_id"
            " JOIN reviewplatform_reviewtask AS t ON t.id = rv.task_id"
            " AND t.reason = 'second_opinion'"
            " JOIN reviewplatform_review AS f ON f.id = t.follows_id",
            label="f.answer", other_label="rv.answer"),
    _branch(ReportKind.TASK,
            "c JOIN reviewplatform_reviewtask AS t ON t.case_id = c.case_id"
            " AND t.status = 'done' AND t.reason <> 'gold'"
            " LEFT JOIN reviewplatform_review AS rv ON rv.task_id = t.id",
            reason="t.reason", bin=wait_bin_sql("t.claimed_at - t.created_at"),
            valued="(rv.seconds IS NOT NULL)::int", total="COALESCE(rv.seconds, 0)"),
    _branch(ReportKind.INPUT,
            "c JOIN inference_prediction AS p ON p.case_id = c.case_id AND p.status = 'ok'",
            local_day=_LOCAL["local_day"], model_version_id="p.model_version_id",
            ood="p.out_of_domain", valued="(p.confidence IS NOT NULL)::int",
            total="COALESCE(p.confidence, 0)"),
])


def facts_sql(cases: str) -> str:
    """Every fact of the cases matching the condition `cases` (on `c`, the case table), as
    the live rows say now; one parameter, %(server_zone)s."""
    return _FACTS_SQL.format(cases=cases)


def _params() -> dict[str, Any]:
    return {"server_zone": settings.TIME_ZONE}


_UPSERT = f"""
INSERT INTO rollout_reportrollup ({DIMENSIONS}, n, valued, total, first, last)
SELECT {DIMENSIONS}, {{sign}}SUM(n), {{sign}}SUM(valued), {{sign}}SUM(total),
       {{first}}, {{last}}
FROM {{rows}} GROUP BY {DIMENSIONS}
ON CONFLICT ON CONSTRAINT reportrollup_key DO UPDATE SET
    n = rollout_reportrollup.n + EXCLUDED.n,
    valued = rollout_reportrollup.valued + EXCLUDED.valued,
    total = rollout_reportrollup.total + EXCLUDED.total,
    first = LEAST(rollout_reportrollup.first, EXCLUDED.first),
    last = GREATEST(rollout_reportrollup.last, EXCLUDED.last)
"""
_COLUMNS = ", ".join(FACT_COLUMNS)


def rollup_fold(*, batch: int = 5000, wait: bool = True, seconds: float | None = None) -> int:
    """Fold the pending cases into the rollup, `batch` cases a transaction; returns how many
    were folded. Each case's old facts are taken out of the rollup, its new facts put in.

    `wait=False`: return at once while another fold holds the lock (beat's tasks must not
    queue up behind a long fold); `seconds`: start no new batch after that long.
    """
    started = time.monotonic()
    folded = 0
    while seconds is None or time.monotonic() - started < seconds:
        with connection.cursor() as cursor:  # idle most of the time: no lock, no table
            cursor.execute("SELECT EXISTS (SELECT 1 FROM rollout_reportpending)")
            if not cursor.fetchone()[0]:
                break
        with transaction.atomic(), connection.cursor() as cursor:
            if wait:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [FOLD_LOCK])
            else:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [FOLD_LOCK])
                if not cursor.fetchone()[0]:
                    break
            cursor.execute("""
                CREATE TEMPORARY TABLE report_fold_cases ON COMMIT DROP AS
                WITH taken AS (
                    DELETE FROM rollout_reportpending WHERE id IN (
                        SELECT id FROM rollout_reportpending ORDER BY id LIMIT %s)
                    RETURNING case_id)
                SELECT DISTINCT case_id FROM taken""", [batch])
            taken = cursor.rowcount
            if not taken:
                cursor.execute("DROP TABLE report_fold_cases")
                break
            cursor.execute("ANALYZE report_fold_cases")
            cursor.execute(
                "WITH gone AS (DELETE FROM rollout_reportfact AS f USING report_fold_cases AS x"
                " WHERE f.case_id = x.case_id RETURNING f.*) "
                + _UPSERT.format(sign="-", first="NULL::timestamptz", last="NULL::timestamptz",
                                 rows="gone"))
            cursor.execute(
                f"WITH added AS (INSERT INTO rollout_reportfact ({_COLUMNS}) "
                + facts_sql("c.id IN (SELECT case_id FROM report_fold_cases)")
                + " RETURNING *) "
                + _UPSERT.format(sign="", first="MIN(captured)", last="MAX(captured)",
                                 rows="added"),
                _params())
            cursor.execute("DELETE FROM rollout_reportrollup WHERE n = 0")
            # ON COMMIT drops it too, but a fold inside an outer transaction only ends a
            # savepoint.
            cursor.execute("DROP TABLE report_fold_cases")
        folded += taken
    return folded


def rollup_rebuild() -> int:
    """Recompute every fact and the rollup from the live rows; returns the facts written."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [FOLD_LOCK])
        cursor.execute("TRUNCATE rollout_reportpending, rollout_reportfact, rollout_reportrollup")
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(f"INSERT INTO rollout_reportfact ({_COLUMNS}) " + facts_sql("TRUE"),
                       _params())
        written = cursor.rowcount
        cursor.execute(_UPSERT.format(sign="", first="MIN(captured)", last="MAX(captured)",
                                      rows="rollout_reportfact"))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE rollout_reportfact")
        cursor.execute("ANALYZE rollout_reportrollup")
    return written


def pending_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM rollout_reportpending")
        return int(cursor.fetchone()[0])


# -- reading ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Where:
    """Conditions on the counted dimensions (each applied only when set)."""

    deployment_id: int
    day_from: Any = None
    day_to: Any = None
    region_id: int | None = None
    policy_versions: Sequence[int] | None = None  # the stage filter, as policy versions
    reason: str | None = None
    model_version_id: int | None = None
    exists: bool = True  # False: a filter matches nothing (an unknown region, say)

    def sql(self) -> tuple[str, dict[str, Any]]:
        """The conditions with named parameters (w_...)."""
        if not self.exists:
            return "FALSE", {}
        values = {"deployment_id": self.deployment_id, "day_from": self.day_from,
                  "day_to": self.day_to, "region_id": self.region_id, "reason": self.reason,
                  "model_version_id": self.model_version_id,
                  "policy_versions": (None if self.policy_versions is None
                                      else list(self.policy_versions))}
        tests = {"deployment_id": "deployment_id = %(w_deployment_id)s",
                 "day_from": "day >= %(w_day_from)s", "day_to": "day <= %(w_day_to)s",
                 "region_id": "region_id = %(w_region_id)s", "reason": "reason = %(w_reason)s",
                 "model_version_id": "model_version_id = %(w_model_version_id)s",
                 "policy_versions": "policy_version_id = ANY(%(w_policy_versions)s)"}
        used = {name: value for name, value in values.items() if value is not None}
        return (" AND ".join(tests[name] for name in used),
                {f"w_{name}": value for name, value in used.items()})


_CORRECTION_SQL = """
CREATE TEMPORARY TABLE report_correction ON COMMIT DROP AS
WITH pending AS (SELECT DISTINCT case_id FROM rollout_reportpending)
SELECT {dims}, SUM(n) AS n, SUM(valued) AS valued, SUM(total) AS total,
       MIN(first) AS first, MAX(last) AS last
FROM (
    SELECT {dims}, -n AS n, -valued AS valued, -total AS total,
           NULL::timestamptz AS first, NULL::timestamptz AS last
    FROM rollout_reportfact WHERE case_id IN (SELECT case_id FROM pending)
    UNION ALL
    SELECT {dims}, n, valued, total, captured, captured FROM ({facts}) AS fresh
) AS changes
GROUP BY {dims}
"""


@contextmanager
def rollup_corrected() -> Iterator[None]:
    """Reads inside (`rollup_read`) see the rollup corrected for the cases written since
    their last fold: their old facts out, their facts as the live rows say now in. The
    correction is computed once, into a temporary table; use it inside a transaction."""
    with connection.cursor() as cursor:
        cursor.execute(_CORRECTION_SQL.format(
            dims=DIMENSIONS, facts=facts_sql("c.id IN (SELECT case_id FROM pending)")),
            _params())
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS report_correction")


_READ_SQL = """
SELECT {group}{comma}SUM(n) AS n, SUM(valued) AS valued, SUM(total) AS total{span}
FROM (
    SELECT {columns} FROM rollout_reportrollup WHERE kind = {kind}
    UNION ALL
    SELECT {columns} FROM report_correction WHERE kind = {kind}
) AS counted
WHERE {where}
{group_by}
"""


def rollup_read(kind: ReportKind, where: Where, group: Iterable[str], *, span: bool = False
                ) -> list[dict[str, Any]]:
    """The kind's counts under the conditions, grouped by `group` (dimension names), inside
    `rollup_corrected`. `span`: with the first and last capture too. Groups whose counts
    cancel out (n = 0) are left out."""
    group = list(group)
    unknown = set(group) - set(ReportCounted.DIMENSIONS)
    if unknown:
        raise ValueError(f"not a report dimension: {sorted(unknown)}")
    condition, params = where.sql()
    sql = _READ_SQL.format(
        columns=f"{DIMENSIONS}, n, valued, total, first, last", kind=int(kind),
        group=", ".join(group), comma=", " if group else "",
        span=", MIN(first) AS first, MAX(last) AS last" if span else "",
        where=condition, group_by=f"GROUP BY {', '.join(group)}" if group else "")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = [c[0] for c in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return [row for row in rows if row["n"]]


def wait_percentiles(bins: dict[int, int], percentiles: Iterable[float]
                     ) -> dict[str, float | None]:
    """Percentiles as PostgreSQL's percentile_cont defines them (linear between the two waits
    around the rank), estimated from waiting-time bins: the k-th wait is placed evenly within
    its bin, so each is within the bin's width (5%, or 1 s in the first) of the true one."""
    total = sum(bins.values())
    order = sorted(bins)

    def nth(k: int) -> float:
        seen = 0
        for b in order:
            if k < seen + bins[b]:
                low, high = wait_bin_bounds(b)
                return low + (high - low) * (k - seen + 0.5) / bins[b]
            seen += bins[b]
        raise IndexError(k)

    out: dict[str, float | None] = {}
    for p in percentiles:
        key = f"p{int(p * 100)}"
        if not total:
            out[key] = None
            continue
        rank = p * (total - 1)
        below = math.floor(rank)
        above = min(below + 1, total - 1)
        out[key] = nth(below) + (rank - below) * (nth(above) - nth(below))
    return out
