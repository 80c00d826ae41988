"""Exports, streamed: decisions as CSV or JSON, and a retraining data set as a zip.

Rows come from a server-side cursor in chunks (`iterator(chunk_size=...)`) and leave as they
are formatted, so memory stays flat whatever the number of decisions. No per-row Python
objects beyond the tuples: the CSV's times are formatted by PostgreSQL and each batch of
rows goes through csv.writer's C loop into one reused buffer.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from itertools import islice
from pathlib import PurePosixPath
from typing import Any

from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import CharField, F, Func, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from reviewplatform.models import Decision, Review, ReviewTask

from ..models import Adjudication
from .filters import ReportFilters, decisions_filtered

CHUNK = 5000
CSV_BATCH = 2000
VALID_SHARE = 0.2

COLUMNS = ["case_id", "external_id", "region", "captured_at", "decided_at", "label", "source",
           "policy_version", "stage", "rule", "model_label", "model_confidence",
           "out_of_domain", "adjudicated_label"]


def _adjudicated() -> Subquery:
    return Subquery(Adjudication.objects.filter(case_id=OuterRef("case_id"))
                    .order_by("-created_at", "-id").values("label")[:1])


def decision_rows(f: ReportFilters, *, iso_in_sql: bool = False
                  ) -> QuerySet[Decision, tuple[Any, ...]]:
    """The decisions under the filters as tuples in COLUMNS order, oldest first. With
    `iso_in_sql` the two times come as their `isoformat()` text already."""
    captured: Any = "case__captured_at"
    decided: Any = "decided_at"
    if iso_in_sql:
        captured, decided = IsoFormat("case__captured_at"), IsoFormat("decided_at")
    return (decisions_filtered(f)
            .annotate(adjudicated=_adjudicated())
            .values_list("case_id", "case__external_id", "case__region__code",
                         captured, decided, "label", "source",
                         "policy_version__version", "policy_version__stage", "rule",
                         "mp__label", "mp__confidence", "mp__out_of_domain", "adjudicated")
            .order_by("id"))


class IsoFormat(Func):
    """A timestamptz as Python's `datetime.isoformat()` of it in UTC (the connection's
    zone), fractional seconds only when there are some."""

    output_field = CharField()
    template = (
        "(CASE WHEN %(expressions)s = date_trunc('second', %(expressions)s)"
        " THEN to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
        " ELSE to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"
        " END || '+00:00')")


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def decisions_csv(f: ReportFilters) -> Iterator[str]:
    """Batches of rows written by csv.writer into one reused buffer. The database formats
    the times, so rows go to the writer as they come (None is written empty, booleans as
    True/False, floats as repr)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    with _whole_result_read():
        rows = decision_rows(f, iso_in_sql=True).iterator(chunk_size=CSV_BATCH)
        while True:
            batch = list(islice(rows, CSV_BATCH))
            if batch:
                writer.writerows(batch)
            if buffer.tell():
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
            if len(batch) < CSV_BATCH:
                return


@contextmanager
def _whole_result_read() -> Iterator[None]:
    """A transaction for the server-side cursor (streamed, not materialized WITH HOLD) in
    which PostgreSQL plans for reading every row: by default it plans a cursor for its first
    10% (cursor_tuple_fraction), which picks index-probe joins several times slower here."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        yield


def decisions_json(f: ReportFilters) -> Iterator[str]:
    """A JSON array of objects, written one batch of rows at a time."""
    yield "["
    first = True
    batch: list[str] = []
    with _whole_result_read():
        for row in decision_rows(f).iterator(chunk_size=CHUNK):
            item = json.dumps(dict(zip(COLUMNS, map(_iso, row), strict=True)))
            batch.append(item if first else "," + item)
            first = False
            if len(batch) >= 1000:
                yield "\n".join(batch)
                batch = []
    if batch:
        yield "\n".join(batch)
    yield "]\n"


# -- retraining data set -------------------------------------------------------------------------

def is_valid(case_id: int, share: float = VALID_SHARE) -> bool:
    """A stable validation split: the same case is always on the same side."""
    digest = hashlib.sha256(f"valid:{case_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


def training_rows(f: ReportFilters) -> QuerySet[Decision, tuple[Any, ...]]:
    """(case id, image path, label) of every case with a human label: the newest
    adjudication, else a human decision, else a blind audit answer that is a label."""
    labels = list(f.deployment.labels)
    audit = Subquery(Review.objects.filter(case_id=OuterRef("case_id"),
                                           task__reason=ReviewTask.Reason.AUDIT,
                                           answer__in=labels)
                     .order_by("-created_at").values("answer")[:1])
    human = Subquery(Decision.objects.filter(pk=OuterRef("pk"), source=Decision.Source.HUMAN,
                                             label__in=labels).values("label")[:1])
    return (decisions_filtered(f)
            .annotate(train_label=Coalesce(_adjudicated(), human, audit))
            .filter(train_label__in=labels)
            .values_list("case_id", F("case__image"), "train_label")
            .order_by("id"))


class _Pipe(io.RawIOBase):
    """A write-only, unseekable file whose bytes are collected and handed on by the caller."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.offset = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.chunks.append(chunk)
        self.offset += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.offset

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks = []
        return data


def _safe(label: str) -> str:
    """A folder name for a label (labels are the deployment's own; no path tricks)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label) or "_"


def retraining_zip(f: ReportFilters) -> Iterable[bytes]:
    """`<label>/<case id><ext>` per image (what ImageDataLoaders.from_folder reads, with
    valid_pct or the split in labels.csv) and `labels.csv` (fname,label,is_valid for
    from_csv). Images are stored, not deflated: they are compressed already."""
    pipe = _Pipe()
    listing = io.StringIO()
    writer = csv.writer(listing)
    writer.writerow(["fname", "label", "is_valid"])
    with zipfile.ZipFile(pipe, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for case_id, image, label in training_rows(f).iterator(chunk_size=500):
            suffix = PurePosixPath(image).suffix.lower() or ".png"
            name = f"{_safe(label)}/{case_id}{suffix}"
            try:
                with default_storage.open(image, "rb") as source, \
                        archive.open(name, "w") as target:
                    while block := source.read(1 << 16):
                        target.write(block)
            except FileNotFoundError:
                continue
            writer.writerow([name, label, str(is_valid(case_id))])
            yield pipe.take()
        archive.writestr("labels.csv", listing.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    yield pipe.take()
