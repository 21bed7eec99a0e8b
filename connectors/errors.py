"""The hub's one error taxonomy for outbound and inbound calls.

Each connector maps its vendor's failures into these classes once; nothing above the
connector layer looks at HTTP status codes.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base class. ``http_status`` is recorded on the delivery attempt when known."""

    def __init__(self, message: str, *, http_status: int | None = None):
        super().__init__(message)
        self.http_status = http_status


class Retryable(ConnectorError):
    """Transient: timeouts, connection errors, 5xx, lock contention. Try again later.

    ``outcome_unknown`` is True when the request may have reached the target (a
    timeout after sending): the retry must look the document up before creating it.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        http_status: int | None = None,
        outcome_unknown: bool = False,
    ):
        super().__init__(message, http_status=http_status)
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown


class RateLimited(Retryable):
    """429 or a vendor quota error; ``retry_after`` is the minimum wait in seconds."""


class Permanent(ConnectorError):
    """The request is wrong (400/404/422, mapping or validation): retrying cannot help."""


class NeedsConfiguration(Permanent):
    """401/403 or missing setup in the target: a person must act before a replay."""


class InvalidSignature(Exception):
    """An inbound webhook failed authentication (missing, wrong or stale signature)."""


class MalformedPayload(Exception):
    """An inbound payload is not what the vendor's documents describe."""


class MappingError(Permanent):
    """A vendor payload cannot be expressed as a canonical contract (data fault)."""


class ProductMissing(Retryable):
    """A document names a catalog product (by its code, the SKU) the target does not
    have yet: its release is still on the way. Retried; if the product never comes,
    product operations release it and replay."""

    def __init__(self, message: str, *, sku: str):
        super().__init__(message)
        self.sku = sku
