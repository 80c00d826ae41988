"""Simulated people: reviewer accounts plainly marked as simulated (`sim-reviewer-<n>`, first
name "Simulated", no usable password), the admin who publishes the scenario's policy changes
and the client who submits its cases. Reviewers answer right with their pool's accuracy and
take their pool's time per case, within their working hours."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.contrib.auth.models import Group, User

from .scenario import ReviewerPool, Scenario

SIMULATED = "Simulated"


def simulated_user(username: str, *, groups: list[str], role: str) -> User:
    """The account, made once: marked simulated in its name, never able to log in."""
    user, created = User.objects.get_or_create(
        username=username, defaults={"first_name": SIMULATED, "last_name": role})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    user.groups.add(*Group.objects.filter(name__in=groups))
    return user


@dataclass
class SimulatedReviewer:
    user: User
    pool: ReviewerPool
    rng: random.Random
    answered: int = 0

    def works_at(self, when: datetime, *, start: datetime) -> bool:
        day = (when - start) / timedelta(days=1)
        if day < self.pool.start_day or (self.pool.end_day is not None
                                         and day >= self.pool.end_day):
            return False
        local = when.astimezone(ZoneInfo(self.pool.timezone))
        return self.pool.hours[0] <= local.hour < self.pool.hours[1]

    def next_shift(self, when: datetime, *, start: datetime) -> datetime | None:
        """The next moment at or after `when` in working hours (to the hour), None if none
        is left in the pool's days."""
        probe = when
        for _ in range(24 * 62):
            if self.pool.end_day is not None and probe >= start + timedelta(
                    days=self.pool.end_day):
                return None
            if self.works_at(probe, start=start):
                return probe
            probe = (probe + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
        return None

    def seconds(self) -> float:
        return self.rng.uniform(*self.pool.seconds)

    def answer(self, truth: str | None, labels: list[str]) -> str:
        """The true label with the pool's accuracy, another label otherwise."""
        if truth is not None and self.rng.random() < self.pool.accuracy:
            return truth
        return self.rng.choice([label for label in labels if label != truth] or labels)


def reviewers_create(scenario: Scenario, *, seed: int) -> list[SimulatedReviewer]:
    reviewers = []
    n = 0
    for pool in scenario.reviewers:
        groups = ["reviewer", "senior reviewer"] if pool.senior else ["reviewer"]
        for _ in range(pool.count):
            n += 1
            user = simulated_user(f"sim-reviewer-{n}", groups=groups,
                                  role=f"reviewer {n} ({pool.name})")
            reviewers.append(SimulatedReviewer(user=user, pool=pool,
                                               rng=random.Random(f"{seed}:reviewer:{n}")))
    return reviewers
