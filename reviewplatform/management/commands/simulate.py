from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from reviewplatform.errors import ServiceError
from reviewplatform.simulation import (
    ScenarioError,
    deployment_prepare,
    digit_images,
    scenario_load,
    simulate,
)
from reviewplatform.simulation.fast_mode import fast_lines


class Command(BaseCommand):
    help = ("Run a rollout scenario (a TOML file, see scenarios/) through the platform's own "
            "services on a simulated clock: cases arriving per region by day and night, a model "
            "right with the scenario's accuracy, simulated reviewers, policy changes through "
            "the evidence gate, guardrails. Prints what happened.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("scenario", type=Path)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--images", type=Path,
                            default=settings.VAR_DIR / "demo" / "digits" / "test",
                            help="digit images in folders named by label (written from "
                                 "scikit-learn's digits when empty)")
        parser.add_argument("--model", type=Path,
                            default=settings.VAR_DIR / "demo" / "digits.pkl",
                            help="the learner registered as champion of a new deployment")
        parser.add_argument("--fast", action="store_true",
                            help="the guardrail's statistics alone, many runs per automated "
                                 "cell, without the database (bench/guardrails.py's mode)")
        parser.add_argument("--runs", type=int, default=200,
                            help="runs per cell in the fast mode")
        parser.add_argument("--predict-with-learner", action="store_true",
                            help="let the registered learner predict every case (slower; the "
                                 "scenario's accuracy table is then not used)")

    def handle(self, *args: Any, scenario: Path, seed: int, images: Path, model: Path,
               predict_with_learner: bool, fast: bool, runs: int, **options: Any) -> None:
        if runs < 1:
            raise CommandError("--runs must be at least 1")
        try:
            loaded = scenario_load(scenario)
            if fast:
                for line in fast_lines(loaded, runs=runs, seed=seed):
                    self.stdout.write(line)
                return
            summary = simulate(loaded, seed=seed, images=digit_images(images),
                               prepare=lambda s: deployment_prepare(s, model=model),
                               predict_with_learner=predict_with_learner)
        except (ScenarioError, ServiceError) as exc:
            raise CommandError(str(exc)) from exc
        for line in summary.lines():
            self.stdout.write(line)
