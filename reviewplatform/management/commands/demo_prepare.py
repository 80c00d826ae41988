from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from reviewplatform.demo import demo_setup


class Command(BaseCommand):
    help = ("Everything `make demo` needs before it starts the servers, in one process: migrate, "
            "collect static files, train the demo model if missing, create the demo users, "
            "deployment, champion and API key. Idempotent.")

    def add_arguments(self, parser: CommandParser) -> None:
        demo = settings.VAR_DIR / "demo"
        parser.add_argument("--model", type=Path, default=demo / "digits.pkl")
        parser.add_argument("--challenger", type=Path, default=demo / "digits-challenger.pkl")
        parser.add_argument("--api-key-file", type=Path,
                            default=demo / "api-key.txt")

    def handle(self, *args: Any, model: Path, challenger: Path, api_key_file: Path,
               **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        if not model.exists():
            self.stdout.write("Training the demo model on scikit-learn's handwritten digits "
                              "(about a minute on a CPU)")
            call_command("train_demo_model", out=model, stdout=self.stdout)
        if not challenger.exists():
            self.stdout.write("Training a challenger: a wider network, another seed")
            call_command("train_demo_model", out=challenger, epochs=4, seed=1,
                         channels=[32, 64, 96], stdout=self.stdout)
        setup = demo_setup(model_path=model, challenger_path=challenger,
                           training_images=model.parent / "digits" / "train",
                           api_key_file=api_key_file)
        self.stdout.write(f"deployment {setup.deployment.slug} ready; API key in {api_key_file}")
