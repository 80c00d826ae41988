"""The demo's set-up: users, a deployment with regions in several time zones, a champion and a
challenger model, input limits fitted to the training images, the training images as each
version's reference set, and an API key. Every step reuses
what exists, so running it again changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from inference.demo_model import DIGIT_LABELS
from inference.models import DomainThresholds
from inference.reference import ReferenceImageIn, reference_set_store
from inference.services import domain_thresholds_fit, model_version_register
from rollout.services import deployment_create

from .errors import ServiceError
from .models import ApiKey, Case, Deployment
from .services import api_key_create
from .simulation import Summary, digit_images, scenario_load, simulate

DEMO_DEPLOYMENT = "digits"
HISTORY_PREFIX = "history"  # external ids of the simulated history's cases
DEMO_REGIONS = [
    ("north", "North", "Europe/Oslo"),
    ("east", "East", "Asia/Tokyo"),
    ("west", "West", "America/Los_Angeles"),
    ("south", "South", "Australia/Sydney"),
]
DEMO_USERS = {
    # username: (password, groups, is_staff)
    "admin": ("admin-demo", ["rollout admin", "reviewer"], True),
    "reviewer": ("reviewer-demo", ["reviewer"], False),
    "client": ("client-demo", ["api client"], False),
}


@dataclass(frozen=True)
class DemoSetup:
    deployment: Deployment
    api_key: str


def demo_setup(*, model_path: Path, challenger_path: Path | None, training_images: Path,
               api_key_file: Path) -> DemoSetup:
    user_model = get_user_model()
    users = {}
    for username, (password, groups, is_staff) in DEMO_USERS.items():
        user, created = user_model.objects.get_or_create(username=username)
        if created:
            user.set_password(password)
            user.is_staff = is_staff
            user.is_superuser = is_staff
            user.save()
            user.groups.set(Group.objects.filter(name__in=groups))
        users[username] = user

    deployment = Deployment.objects.filter(slug=DEMO_DEPLOYMENT).first()
    if deployment is None:
        deployment = deployment_create(slug=DEMO_DEPLOYMENT, name="Handwritten digits",
                                       labels=DIGIT_LABELS, regions=DEMO_REGIONS,
                                       actor=users["admin"])
    if not deployment.model_versions.exists():
        model_version_register(deployment=deployment, path=model_path, name="digits-cnn-v1",
                               champion=True, actor=users["admin"],
                               notes="small CNN trained on scikit-learn's digits")
    if challenger_path is not None and not deployment.model_versions.filter(
            is_champion=False).exists():
        model_version_register(deployment=deployment, path=challenger_path,
                               name="digits-cnn-wide", champion=False, actor=users["admin"],
                               notes="wider CNN, another seed, fewer epochs")
    if not DomainThresholds.objects.filter(deployment=deployment).exists():
        images = [path.read_bytes() for path in sorted(training_images.glob("*/*.png"))]
        domain_thresholds_fit(deployment=deployment, images=images)
    # Each version's reference set: the training and validation digits (images the network
    # learnt from alone would set too tight a threshold: new digits lie a little farther). Its
    # detector is fitted after the set-up, outside any transaction (`reference_detectors_fit`).
    reference_files = [path for folder in (training_images, training_images.parent / "valid")
                       for path in sorted(folder.glob("*/*.png"))]
    for version in deployment.model_versions.filter(reference_set__isnull=True):
        reference_set_store(version=version, images=[
            ReferenceImageIn(label=path.parent.name, name=path.name, data=path.read_bytes())
            for path in reference_files])

    key = api_key_file.read_text().strip() if api_key_file.exists() else ""
    prefix = key.partition(".")[0]
    usable = ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True,
                                   deployments=deployment)
    if not key or not usable.exists():
        _, key = api_key_create(user=users["client"], name="demo client",
                                deployments=[deployment])
        api_key_file.parent.mkdir(parents=True, exist_ok=True)
        api_key_file.write_text(key + "\n")
        api_key_file.chmod(0o600)
    return DemoSetup(deployment=deployment, api_key=key)


def demo_history_seeded() -> bool:
    return Case.objects.filter(deployment__slug=DEMO_DEPLOYMENT,
                               external_id__startswith=f"{HISTORY_PREFIX}-").exists()


def demo_history_seed(*, scenario: Path, model_path: Path, challenger_path: Path | None,
                      training_images: Path, images: Path, api_key_file: Path, seed: int = 0
                      ) -> Summary | None:
    """Two simulated weeks before now (the scenario), through the simulator and the real
    services; None when the history is already there.

    The demo is set up (`demo_setup`) at the simulated start, so a new deployment's history
    begins with it. The weeks are written in one transaction: a seeding that fails leaves
    nothing, and a second run finds the history or seeds it afresh.
    """
    loaded = scenario_load(scenario)
    if loaded.deployment_slug != DEMO_DEPLOYMENT:
        raise ServiceError(f"{scenario}: the demo's history is for deployment "
                           f"{DEMO_DEPLOYMENT}, not {loaded.deployment_slug}")
    if demo_history_seeded():
        return None
    files = digit_images(images)

    def prepare(_: object) -> Deployment:
        return demo_setup(model_path=model_path, challenger_path=challenger_path,
                          training_images=training_images, api_key_file=api_key_file
                          ).deployment

    with transaction.atomic():
        return simulate(loaded, prepare=prepare, images=files, seed=seed,
                        external_prefix=HISTORY_PREFIX)
