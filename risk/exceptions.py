from orders.exceptions import ApplicationError


class RiskRejected(ApplicationError):
    """The order breached pre-trade limits; it is stored as rejected (422)."""

    code = "risk_rejected"
    http_status = 422


class TradingHalted(ApplicationError):
    code = "trading_halted"
    http_status = 423


class RateLimited(ApplicationError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, extra={"retry_after": retry_after})
        self.retry_after = retry_after


class RiskUnavailable(ApplicationError):
    """The risk snapshot could not be read: the order is refused, never passed (fail safe)."""

    code = "risk_unavailable"
    http_status = 503


class RiskPermissionDenied(ApplicationError):
    code = "permission_denied"
    http_status = 403
