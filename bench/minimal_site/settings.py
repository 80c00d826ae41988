"""The project's settings (as `make demo` runs them), with the bench URLconf."""

from reviewplatform.settings.base import *  # noqa: F403

ROOT_URLCONF = "bench.minimal_site.urls"
# Whose cases the minimal endpoint stores (it authenticates nobody): the demo's API client.
MINIMAL_SUBMITTER = "client"
