from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reviewplatform.errors import ServiceError
from reviewplatform.services import api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key by its prefix (the part before the dot): it is refused from now on."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prefix")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            api_key = api_key_revoke(prefix=options["prefix"].partition(".")[0])
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        since = api_key.revoked_at.isoformat() if api_key.revoked_at else "now"
        self.stdout.write(f"API key {api_key.prefix} ({api_key.name}) of "
                          f"{api_key.user.username} is revoked since {since}.")
