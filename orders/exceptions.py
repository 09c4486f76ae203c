"""Errors with a stable code and HTTP status; the API renders each in the API.md shape."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    code = "error"
    http_status = 400

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        fields: dict[str, list[str]] | None = None,
        order_id: Any = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status
        self.fields = fields
        self.order_id = order_id
        self.extra = extra or {}

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            body["fields"] = self.fields
        body["order_id"] = str(self.order_id) if self.order_id else None
        body.update(self.extra)
        return body


class OrderValidationError(ApplicationError):
    """An order that breaks a rule of its instrument, type or time in force (400)."""

    http_status = 400

    def __init__(self, code: str, field: str, rule: str, message: str | None = None) -> None:
        super().__init__(message or f"{field}: {rule}", code=code, fields={field: [rule]})


class InvalidTransition(ApplicationError):
    code = "invalid_transition"
    http_status = 409


class DuplicateClientOrderId(ApplicationError):
    code = "duplicate_client_order_id"
    http_status = 409


class NotFound(ApplicationError):
    code = "not_found"
    http_status = 404


class ProvisioningError(ApplicationError):
    """Bad input when setting up users, accounts or instruments (a name, a code, a currency)."""

    code = "invalid_request"
    http_status = 400


class ServiceUnavailable(ApplicationError):
    """The database failed the request (unreachable, restarting, a connection dropped, a
    transaction given up): send it again shortly, an order with the same client_order_id
    (answered with the stored order if it was stored). Also a batch's order the database did
    not store after others were stored (those are answered as stored)."""

    code = "service_unavailable"
    http_status = 503
    retry_after = 1
    default_message = (
        "the database could not complete the request; send it again shortly (an order with "
        "the same client_order_id is answered with the stored order if it was stored)"
    )

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.default_message)


class IntakeBusy(ApplicationError):
    """More accepted orders wait for a worker than the intake lets pile up: new orders are
    refused (503, nothing stored) until the workers catch up."""

    code = "service_busy"
    http_status = 503

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, extra={"retry_after": retry_after})
        self.retry_after = retry_after
