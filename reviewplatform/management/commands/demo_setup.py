from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from reviewplatform.demo import demo_setup


class Command(BaseCommand):
    help = "Create the demo users, deployment, champion model and API key (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", type=Path, default=settings.VAR_DIR / "demo" / "digits.pkl")
        parser.add_argument("--api-key-file", type=Path,
                            default=settings.VAR_DIR / "demo" / "api-key.txt")

    def handle(self, *args: Any, model: Path, api_key_file: Path, **options: Any) -> None:
        setup = demo_setup(model_path=model, api_key_file=api_key_file)
        self.stdout.write(f"deployment {setup.deployment.slug} ready; API key in {api_key_file}")
