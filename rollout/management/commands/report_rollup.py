"""Maintain the report's pre-counted figures: fold pending cases, or rebuild from scratch."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from rollout.reports.rollup import pending_count, rollup_fold, rollup_rebuild


class Command(BaseCommand):
    help = ("Fold the cases written since the last fold into the report's rollup (what beat "
            "does every few seconds), or --rebuild it from every case: after a bulk load that "
            "bypassed the database triggers, or after changing a region's time zone, a "
            "deployment's labels or TIME_ZONE.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rebuild", action="store_true",
                            help="recompute every fact and the rollup from the live rows")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()
        if options["rebuild"]:
            facts = rollup_rebuild()
            self.stdout.write(f"rebuilt: {facts:,} facts in {time.perf_counter() - started:.1f} s")
            return
        folded = rollup_fold()
        self.stdout.write(f"folded {folded:,} cases in {time.perf_counter() - started:.1f} s; "
                          f"{pending_count():,} pending")
