from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from reviewplatform.demo import demo_history_seed
from reviewplatform.errors import ServiceError
from reviewplatform.settings.envvars import env_bool
from reviewplatform.simulation import ScenarioError

SCENARIO = settings.BASE_DIR / "scenarios" / "demo_history.toml"


class Command(BaseCommand):
    help = ("Seed the demo with two simulated weeks before now (scenarios/demo_history.toml), "
            "through the simulator and the platform's own services: a shadow week reviewed by "
            "simulated reviewers, a limited scope published on its evidence, a widening, and a "
            "drift the guardrail pauses. Makes the demo deployment (as demo_prepare would) at "
            "the start of the history. Seeds once; DEMO_HISTORY=0 seeds nothing.")

    def add_arguments(self, parser: CommandParser) -> None:
        demo = settings.VAR_DIR / "demo"
        parser.add_argument("--model", type=Path, default=demo / "digits.pkl")
        parser.add_argument("--challenger", type=Path, default=demo / "digits-challenger.pkl")
        parser.add_argument("--api-key-file", type=Path, default=demo / "api-key.txt")
        parser.add_argument("--images", type=Path, default=demo / "digits" / "test")
        parser.add_argument("--scenario", type=Path, default=SCENARIO)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args: Any, model: Path, challenger: Path, api_key_file: Path,
               images: Path, scenario: Path, seed: int, **options: Any) -> None:
        if not env_bool("DEMO_HISTORY", True):
            self.stdout.write("DEMO_HISTORY=0: the demo starts without a history")
            return
        try:
            summary = demo_history_seed(
                scenario=scenario, model_path=model,
                challenger_path=challenger if challenger.exists() else None,
                training_images=images.parent / "train", images=images,
                api_key_file=api_key_file, seed=seed)
        except (ScenarioError, ServiceError) as exc:
            raise CommandError(str(exc)) from exc
        if summary is None:
            self.stdout.write("the demo's simulated history is already there")
            return
        self.stdout.write("Seeded the demo's simulated history:")
        for line in summary.lines():
            self.stdout.write(f"  {line}")
