from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save
from django.urls import register_converter

from .converters import IdConverter


class ReviewPlatformConfig(AppConfig):
    name = "reviewplatform"
    verbose_name = "Cases and review"

    def ready(self) -> None:
        from django.contrib.auth.models import Group, User

        from .models import ApiKey, Deployment, Region
        from .roles import roles_ensure
        from .services.api_keys import api_keys_forget

        # Before any URLconf is read: every app's urls.py writes database ids as <id:...>.
        register_converter(IdConverter, "id")
        # Runs after the last app migrated, when every permission exists.
        post_migrate.connect(roles_ensure, dispatch_uid="reviewplatform.roles_ensure")
        # Authentication caches each API key with its user's permissions and its deployments
        # with their regions: any change to those, the admin's included, is read again.
        for model in [ApiKey, User, Group, Deployment, Region]:
            for signal in [post_save, post_delete]:
                signal.connect(api_keys_forget, sender=model,
                               dispatch_uid=f"api_keys_forget.{signal}.{model.__name__}")
        for through in [ApiKey.deployments.through, User.groups.through,
                        User.user_permissions.through, Group.permissions.through]:
            m2m_changed.connect(api_keys_forget, sender=through,
                                dispatch_uid=f"api_keys_forget.m2m.{through.__name__}")
