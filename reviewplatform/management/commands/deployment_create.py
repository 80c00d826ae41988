import argparse
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reviewplatform.errors import ServiceError
from reviewplatform.onboarding import RegionIn, deployment_onboard


def _region(value: str) -> RegionIn:
    parts = value.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(
            f"{value!r}: a region is CODE:NAME:TIMEZONE, e.g. north:North:Europe/Oslo")
    code, name, timezone = parts
    return RegionIn(code=code, name=name, timezone=timezone)


class Command(BaseCommand):
    help = ("Onboard a team's own model: a deployment for an exported fastai learner "
            "(learn.export()), with its regions, its first policy (shadow), the learner as "
            "champion, a reference set (a zip of one folder per label) that fits the input "
            "limits, and an API key for the client, printed once. The learner is a pickle: "
            "onboard only files you trust. See docs/own-model.md.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("learner", type=Path, help="the exported learner (export.pkl)")
        parser.add_argument("--slug", required=True)
        parser.add_argument("--name", required=True, help="the deployment's name")
        parser.add_argument("--region", required=True, action="append", dest="regions",
                            type=_region, metavar="CODE:NAME:TIMEZONE",
                            help="a region, e.g. north:North:Europe/Oslo (repeat for several)")
        parser.add_argument("--reference", required=True, type=Path,
                            help="a zip of one folder per label with training-like images")
        parser.add_argument("--client", required=True,
                            help="the API client account the key acts as (created if new)")
        parser.add_argument("--labels", help="the labels in display order, comma-separated "
                            "(default: the learner's vocabulary)")
        parser.add_argument("--model-name", default="v1")

    def handle(self, *args: Any, **options: Any) -> None:
        labels = options["labels"].split(",") if options["labels"] else None
        try:
            with options["reference"].open("rb") as reference:
                done = deployment_onboard(
                    slug=options["slug"], name=options["name"], learner=options["learner"],
                    regions=options["regions"], reference=reference, client=options["client"],
                    labels=labels, model_name=options["model_name"], actor=None)
        except FileNotFoundError as exc:
            raise CommandError(f"no such file: {exc.filename}") from exc
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        deployment = done.deployment
        self.stderr.write(
            f"deployment {deployment.slug} ({', '.join(deployment.labels)}) in the shadow "
            f"stage, regions {', '.join(r.code for r in deployment.regions.all())}; champion "
            f"{done.champion.name} (sha256 {done.champion.sha256[:12]}); reference set of "
            f"{done.reference.size} images; input limits fitted. API key for "
            f"{done.api_key.user.username}, shown this once:")
        self.stdout.write(done.api_key_secret)
