"""Who may register, promote and retire models, and onboard them: staff with the model admin
permission. A learner file is a pickle that runs code when it is loaded."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

REGISTER_PERM = "inference.register_modelversion"
VIEW_PERM = "inference.view_modelversion"


def is_model_admin(user: Any) -> bool:
    return bool(user and user.is_staff and user.has_perm(REGISTER_PERM))


def may_see_reference_images(user: Any) -> bool:
    """Staff who may see model versions: reference images are like a model's training data,
    not for reviewers or clients."""
    return bool(user and user.is_staff and user.has_perm(VIEW_PERM))


def model_admin_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A page for model admins only: others logged in get a 403, the rest the login page."""
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_model_admin(request.user):
            raise PermissionDenied
        return view(request, *args, **kwargs)
    return login_required(wrapped)
