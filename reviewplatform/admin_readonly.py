"""Admin pages for records that must not change: audit rows and the history of decisions."""

from typing import Any

from django.http import HttpRequest


class ReadOnlyAdminMixin:
    """Viewing stays (for users with the view permission); adding, changing and deleting are
    refused for everyone, superusers included. These rows are written by the services only."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
