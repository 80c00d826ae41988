"""Simulated time: a queue of events run in time order while the process's clock is moved to each
event's moment (time-machine, not ticking), so that `timezone.now()` and every `auto_now_add`
of the services follow the simulated clock."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import time_machine

Action = Callable[[datetime], None]


class SimClock:
    def __init__(self, start: datetime, end: datetime) -> None:
        self.start, self.end, self.now = start, end, start
        self._queue: list[tuple[datetime, int, Action]] = []
        self._order = itertools.count()
        self._traveller: time_machine.Traveller | None = None

    def at(self, when: datetime, action: Action) -> None:
        """Run `action(when)` once the clock reaches `when` (not before the present; events
        after the end never run). Events at the same moment run in the order given."""
        when = max(when, self.now)
        if when <= self.end:
            heapq.heappush(self._queue, (when, next(self._order), action))

    def every(self, seconds: float, action: Action, *, first: datetime | None = None) -> None:
        """Run `action` every `seconds` from `first` (default: the start) to the end."""
        step = timedelta(seconds=seconds)

        def tick(when: datetime) -> None:
            action(when)
            self.at(when + step, tick)

        self.at(first or self.start, tick)

    @contextmanager
    def travelling(self) -> Iterator[None]:
        with time_machine.travel(self.start, tick=False) as traveller:
            self._traveller = traveller
            try:
                yield
            finally:
                self._traveller = None

    def run(self) -> None:
        """Run the events in time order, the clock moved to each; then stop at the end."""
        assert self._traveller is not None, "run() inside travelling()"
        while self._queue:
            when, _, action = heapq.heappop(self._queue)
            if when != self.now:
                self._traveller.move_to(when)
                self.now = when
            action(when)
        self._traveller.move_to(self.end)
        self.now = self.end
