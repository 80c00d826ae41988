"""What a simulation needs before its first case: the deployment with its champion, and real
digit images in folders named by their label."""

from __future__ import annotations

from pathlib import Path

from inference.demo_model import digits_write
from inference.services import model_version_register
from reviewplatform.models import Deployment
from rollout.services import deployment_create

from .reviewers import simulated_user
from .scenario import Scenario, ScenarioError


def deployment_prepare(scenario: Scenario, *, model: Path) -> Deployment:
    """The scenario's deployment: made with its regions when missing (by the simulated admin),
    else checked against them; a champion registered from `model` when it has none."""
    deployment = Deployment.objects.filter(slug=scenario.deployment_slug).first()
    admin = simulated_user("sim-admin", groups=["rollout admin", "reviewer"],
                           role="rollout admin") if deployment is None else None
    if deployment is None:
        deployment = deployment_create(
            slug=scenario.deployment_slug, name=scenario.deployment_name,
            labels=scenario.labels, actor=admin,
            regions=[(r.code, r.name, r.timezone) for r in scenario.regions])
    else:
        have = set(deployment.regions.values_list("code", flat=True))
        missing = sorted({r.code for r in scenario.regions} - have)
        if missing:
            raise ScenarioError(f"{scenario.path}: deployment {deployment.slug} has no region "
                                f"{', '.join(missing)} (it has {', '.join(sorted(have))})")
    if not deployment.model_versions.filter(is_champion=True).exists():
        if not model.is_file():
            raise ScenarioError(f"deployment {deployment.slug} has no champion and there is no "
                                f"learner at {model} to register (manage.py train_demo_model "
                                f"--out {model})")
        admin = admin or simulated_user("sim-admin", groups=["rollout admin", "reviewer"],
                                        role="rollout admin")
        model_version_register(deployment=deployment, path=model, name="simulated-champion",
                               champion=True, actor=admin,
                               notes="registered by a simulation")
    return deployment


def digit_images(folder: Path) -> list[Path]:
    """The PNG digits under `folder` (`<label>/<name>.png`); scikit-learn's digits are written
    there first when it holds none (`folder` is then taken as a data folder's `test` split)."""
    images = sorted(folder.glob("*/*.png"))
    if not images:
        images = digits_write(folder.parent)["test"]
    return images
