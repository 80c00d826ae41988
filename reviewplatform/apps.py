from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ReviewPlatformConfig(AppConfig):
    name = "reviewplatform"
    verbose_name = "Cases and review"

    def ready(self) -> None:
        from .roles import roles_ensure

        # Runs after the last app migrated, when every permission exists.
        post_migrate.connect(roles_ensure, dispatch_uid="reviewplatform.roles_ensure")
