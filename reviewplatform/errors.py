"""Domain errors: a service refuses a request with a reason, and nothing is changed."""


class ServiceError(Exception):
    """A request the domain refuses. `field` names the input at fault, where there is one;
    `code` is the stable machine code the API answers with."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Forbidden(ServiceError):
    status_code = 403
    code = "permission_denied"


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"
