from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from reviewplatform.errors import ServiceError
from reviewplatform.models import Deployment
from reviewplatform.services import api_key_create


class Command(BaseCommand):
    help = ("Create an API key for a user, scoped to one or more deployments. The key is "
            "printed once: only its hash is stored.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="the username the key acts as")
        parser.add_argument("--deployment", required=True, action="append", dest="deployments",
                            metavar="SLUG", help="a deployment the key may submit to "
                            "(repeat for several)")
        parser.add_argument("--name", required=True, help="what the key is for")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"no user is named {options['user']!r}")
        slugs = list(dict.fromkeys(options["deployments"]))
        deployments = list(Deployment.objects.filter(slug__in=slugs))
        unknown = sorted(set(slugs) - {d.slug for d in deployments})
        if unknown:
            raise CommandError(f"unknown deployment: {', '.join(unknown)}")
        try:
            api_key, secret = api_key_create(user=user, name=options["name"],
                                             deployments=deployments)
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        self.stderr.write(f"API key {api_key.prefix} for {user.username}, deployments "
                          f"{', '.join(sorted(slugs))}. It is shown this once:")
        self.stdout.write(secret)
