from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from inference.demo_model import demo_model_train


class Command(BaseCommand):
    help = "Train the demo fastai learner on scikit-learn's handwritten digits and export it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", type=Path, default=settings.VAR_DIR / "demo" / "digits.pkl")
        parser.add_argument("--data-dir", type=Path, default=settings.VAR_DIR / "demo" / "digits")
        parser.add_argument("--epochs", type=int, default=8)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--channels", type=int, nargs=3, default=[16, 32, 64],
                            help="widths of the three convolution layers")

    def handle(self, *args: Any, out: Path, data_dir: Path, epochs: int, seed: int,
               channels: list[int], **options: Any) -> None:
        c1, c2, c3 = channels
        result = demo_model_train(data_dir=data_dir, out=out, epochs=epochs, seed=seed,
                                  channels=(c1, c2, c3))
        self.stdout.write(
            f"trained {out} in {epochs} epochs: validation accuracy {result.valid_accuracy:.3f}, "
            f"held-out test accuracy {result.test_accuracy:.3f} on {len(result.test_files)} images"
        )
