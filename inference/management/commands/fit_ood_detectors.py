from typing import Any

from django.core.management.base import BaseCommand

from inference.models import ReferenceSet
from inference.reference import reference_detectors_fit


class Command(BaseCommand):
    help = ("Fit the out-of-domain detector of every reference set that has none for its model "
            "version's artifact (beat does the same every 10 minutes).")

    def handle(self, *args: Any, **options: Any) -> None:
        for reference in reference_detectors_fit():
            self.stdout.write(f"{reference.model_version}: threshold "
                              f"{reference.detector_threshold:.2f}")
        for version, error in (ReferenceSet.objects.exclude(detector_error="")
                               .values_list("model_version__name", "detector_error")):
            self.stderr.write(f"{version}: {error}")
