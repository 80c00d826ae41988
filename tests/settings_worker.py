"""Settings of a worker that end-to-end tests start with a time limit of a few seconds: it imports
fastai when it starts, so that the limit measures predictions, not that import (ten seconds and
more on a busy machine)."""

from reviewplatform.settings.test import *  # noqa: F403

CELERY_IMPORTS = ["fastai.vision.all"]
