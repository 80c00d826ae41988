from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.services import model_version_register
from reviewplatform.errors import ServiceError
from reviewplatform.models import Deployment


class Command(BaseCommand):
    help = ("Register an exported fastai learner (learn.export()) as a model version of a "
            "deployment. The file is a pickle: register only artifacts you trust.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--deployment", required=True, help="the deployment's slug")
        parser.add_argument("--name", help="version name (default: v<N>)")
        parser.add_argument("--champion", action="store_true",
                            help="make it the champion (the current one becomes a challenger)")
        parser.add_argument("--notes", default="")

    def handle(self, *args: Any, path: Path, deployment: str, name: str | None, champion: bool,
               notes: str, **options: Any) -> None:
        target = Deployment.objects.filter(slug=deployment).first()
        if target is None:
            raise CommandError(f"unknown deployment {deployment!r}")
        name = name or f"v{target.model_versions.count() + 1}"
        try:
            version = model_version_register(deployment=target, path=path, name=name,
                                             champion=champion, notes=notes)
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"registered {version} with labels {version.labels}, "
                          f"sha256 {version.sha256}")
