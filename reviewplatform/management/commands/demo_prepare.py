from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from inference.reference import reference_detectors_fit
from reviewplatform.demo import demo_setup


class Command(BaseCommand):
    help = ("Everything `make demo` needs before it starts the servers, in one process: migrate, "
            "collect static files, train the demo model if missing, seed two simulated weeks "
            "of history (demo_history; DEMO_HISTORY=0 skips it), create the demo users, "
            "deployment, champion and API key. Idempotent.")

    def add_arguments(self, parser: CommandParser) -> None:
        demo = settings.VAR_DIR / "demo"
        parser.add_argument("--model", type=Path, default=demo / "digits.pkl")
        parser.add_argument("--challenger", type=Path, default=demo / "digits-challenger.pkl")
        parser.add_argument("--api-key-file", type=Path,
                            default=demo / "api-key.txt")
        parser.add_argument("--epochs", type=int, default=8,
                            help="training epochs of the champion, when it is trained")
        parser.add_argument("--challenger-epochs", type=int, default=4)

    def handle(self, *args: Any, model: Path, challenger: Path, api_key_file: Path,
               epochs: int, challenger_epochs: int, **options: Any) -> None:
        # The digits are written next to the model, and read from there below.
        data_dir = model.parent / "digits"
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        if not model.exists():
            self.stdout.write("Training the demo model on scikit-learn's handwritten digits "
                              "(about a minute on a CPU)")
            call_command("train_demo_model", out=model, data_dir=data_dir, epochs=epochs,
                         stdout=self.stdout)
        if not challenger.exists():
            self.stdout.write("Training a challenger: a wider network, another seed")
            call_command("train_demo_model", out=challenger, data_dir=data_dir,
                         epochs=challenger_epochs, seed=1, channels=[32, 64, 96],
                         stdout=self.stdout)
        # The history first: it sets the demo up at its simulated start (DEMO_HISTORY=0: none).
        call_command("demo_history", model=model, challenger=challenger,
                     api_key_file=api_key_file, images=data_dir / "test", stdout=self.stdout)
        setup = demo_setup(model_path=model, challenger_path=challenger,
                           training_images=data_dir / "train",
                           api_key_file=api_key_file)
        for reference in reference_detectors_fit():
            self.stdout.write(f"out-of-domain detector of {reference.model_version}: "
                              f"threshold {reference.detector_threshold:.1f}")
        self.stdout.write(f"deployment {setup.deployment.slug} ready; API key in {api_key_file}")
