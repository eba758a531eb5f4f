"""Why a request is not answered: one family of exceptions, raised by the runtime, the service and the routes.

They carry what went wrong (``detail``), never how HTTP says it: :data:`serving.http.ERRORS` maps each class to its
status, error code and headers.
"""

from __future__ import annotations

from typing import Any

#: The error code of an unknown customer (also the code of its entry in a batch answer).
UNKNOWN_CUSTOMER = "unknown_customer"


class ApiError(Exception):
    """A request the service does not answer.

    Args:
        detail: What went wrong, for the client (a message, or pydantic's error list).
    """

    def __init__(self, detail: Any) -> None:
        super().__init__(detail)
        self.detail = detail


class UnknownCustomer(ApiError):  # noqa: N818 (the name the design uses)
    """The id is not in the online store and no ``features`` were sent."""


class InvalidFeatures(ApiError):  # noqa: N818
    """``features`` names an unknown feature or gives a value of the wrong type."""


class StoreUnavailable(ApiError):  # noqa: N818
    """The online store cannot be read (Redis down, the store file gone): the client may retry."""


class LogUnavailable(ApiError):  # noqa: N818
    """The decision log could not record a decision or feedback (the answer was never acknowledged)."""


class Unauthorized(ApiError):  # noqa: N818
    """No accepted bearer key."""


class Forbidden(ApiError):  # noqa: N818
    """The key is accepted but lacks the route's scope."""


class RateLimited(ApiError):  # noqa: N818
    """The key is over its rate limit.

    Args:
        detail: The message.
        wait: Seconds until the key may send again.
    """

    def __init__(self, detail: Any, wait: float) -> None:
        super().__init__(detail)
        self.wait = wait


class BodyTooLarge(ApiError):  # noqa: N818
    """The body is over the API's size limit."""


class BatchTooLarge(ApiError):  # noqa: N818
    """More than :data:`serving.schemas.MAX_BATCH` ids in one batch."""


class InvalidJson(ApiError):  # noqa: N818
    """The body is not JSON."""


class InvalidRequest(ApiError):  # noqa: N818
    """The body is JSON but not what the route takes (wrong types, missing or extra fields)."""


class UnknownDecision(ApiError):  # noqa: N818
    """Feedback on a decision id this service never issued."""
