"""The report page's read: the whole report, from the pre-counted figures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction

from .figures import Report
from .filters import ReportFilters
from .precounted import report_precounted


def report_build(f: ReportFilters) -> Report:
    """The whole report under the filters, read from the rollup (`precounted`)."""
    with report_reading():
        return report_precounted(f)


@contextmanager
def report_reading() -> Iterator[None]:
    """One transaction and one snapshot (repeatable read: the sections agree with each other)
    without JIT compilation: a query that scans many rows (the correction for a large pending
    set) passes its cost threshold, and compiling took longer than running."""
    if transaction.get_connection().in_atomic_block:
        yield  # already inside a transaction: its isolation level stays as it is
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute("SET LOCAL jit = off")
        yield
