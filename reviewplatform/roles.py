"""The platform's roles as Django groups with their permissions, kept in step after migrate."""

from typing import Any

REVIEWER = ["reviewplatform.view_case", "reviewplatform.add_review"]

ROLES: dict[str, list[str]] = {
    "reviewer": REVIEWER,
    # Decides escalated cases (two reviewers disagreed) and sees every reviewer's figures.
    "senior reviewer": [*REVIEWER, "reviewplatform.review_escalation",
                        "reviewplatform.view_team_figures"],
    "rollout admin": [
        "reviewplatform.view_case", "reviewplatform.view_decision",
        "reviewplatform.view_review", "reviewplatform.view_reviewtask",
        "reviewplatform.view_team_figures", "reviewplatform.mark_gold",
        "reviewplatform.view_goldcase", "reviewplatform.add_goldcase",
        "reviewplatform.change_goldcase",
        "rollout.view_policyversion", "rollout.add_policyversion",
        "inference.view_modelversion", "inference.view_prediction",
    ],
    # Registers, promotes and retires model versions: artifacts are pickles that run code when
    # loaded, so this role goes only to staff who administer the models (the pages check both).
    "model admin": ["inference.view_modelversion", "inference.view_prediction",
                    "inference.register_modelversion"],
    "api client": ["reviewplatform.add_case", "webhooks.add_webhookendpoint"],
}


def roles_ensure(**kwargs: Any) -> None:
    from django.contrib.auth.models import Group, Permission

    for role, perms in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        wanted: list[Permission] = []
        for perm in perms:
            app_label, codename = perm.split(".")
            wanted.extend(Permission.objects.filter(content_type__app_label=app_label,
                                                    codename=codename))
        group.permissions.set(wanted)
