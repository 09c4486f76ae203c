"""One renderer for every API error: `{"error": {"code", "message", "fields"?, "order_id"}}`."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from psycopg_pool import PoolTimeout, TooManyRequests
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from orders.exceptions import ApplicationError, ServiceUnavailable

logger = logging.getLogger(__name__)

# Seconds a client is asked to wait after the database connection pool was exhausted.
POOL_EXHAUSTED_RETRY_AFTER = 1

DRF_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
    exceptions.ParseError: "malformed_json",
}


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"field.sub": ["message", ...]}."""
    fields: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            fields.update(_flatten(value, name))
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            fields[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                fields.update(_flatten(item, f"{prefix}[{index}]" if prefix else f"[{index}]"))
    else:
        fields[prefix or "non_field_errors"] = [str(detail)]
    return fields


def error_body(
    code: str, message: str, *, fields: dict | None = None, order_id: Any = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    body["order_id"] = str(order_id) if order_id else None
    body.update(extra)
    return {"error": body}


def validation_error_body(detail: Any) -> dict[str, Any]:
    fields = _flatten(detail)
    first_field, messages = next(iter(fields.items()))
    message = f"{first_field}: {messages[0]}" if first_field != "non_field_errors" else messages[0]
    return error_body("validation_error", message, fields=fields)


def _is_pool_exhausted(exc: Exception) -> bool:
    """No pooled database connection became free within DB_POOL_TIMEOUT. Django wraps the
    pool's error in its own OperationalError."""
    pool_errors = (PoolTimeout, TooManyRequests)
    return isinstance(exc, pool_errors) or (
        isinstance(exc, OperationalError) and isinstance(exc.__cause__, pool_errors)
    )


def shed(response: Response) -> Response:
    """A 503 `service_busy` is load shedding, by design (backpressure, an exhausted connection
    pool): logged here at INFO, once, and not by django.request as a server error, which
    would bury real errors under thousands of lines while the service sheds load."""
    response._has_been_logged = True  # type: ignore[attr-defined]  # django.utils.log
    logger.info("load shed: 503 service_busy", extra={"retry_after": response.get("Retry-After")})
    return response


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if _is_pool_exhausted(exc):
        # A request takes its connection at its first query and keeps it to the end, so it
        # wrote nothing to the database: retrying is safe.
        view = context.get("view")
        logger.warning(
            "database connection pool exhausted",
            extra={"view": type(view).__name__ if view is not None else None},
        )
        response = Response(
            error_body("service_busy", "the service is busy; retry shortly"),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
        response["Retry-After"] = str(POOL_EXHAUSTED_RETRY_AFTER)
        return shed(response)
    if isinstance(exc, OperationalError | InterfaceError):
        # Logged here once, with its cause: an outage must show (django.request would log the
        # 503 again, without it).
        view = context.get("view")
        logger.error(
            "database failed an API request: %s: %s",
            type(exc).__name__,
            exc,
            extra={"view": type(view).__name__ if view is not None else None},
        )
        response = application_error_response(ServiceUnavailable())
        response._has_been_logged = True  # type: ignore[attr-defined]
        return response
    if isinstance(exc, ApplicationError):
        response = application_error_response(exc)
        return shed(response) if exc.code == "service_busy" else response
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = validation_error_body(exc.detail)
        return response
    code = next((c for cls, c in DRF_CODES.items() if isinstance(exc, cls)), None)
    detail = getattr(exc, "detail", str(exc))
    response.data = error_body(code or getattr(exc, "default_code", "error"), str(detail))
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        response.status_code = status.HTTP_401_UNAUTHORIZED
        response["WWW-Authenticate"] = 'Token realm="api"'
    return response


def application_error_response(exc: ApplicationError) -> Response:
    """An ApplicationError as the API answers it, with Retry-After when it has one."""
    response = Response({"error": exc.as_dict()}, status=exc.http_status)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def json_not_found(request, exception=None):  # noqa: ARG001 - Django's handler signature
    return JsonResponse(error_body("not_found", "not found"), status=404)


def json_server_error(request):  # noqa: ARG001
    return JsonResponse(
        error_body("server_error", "internal error; it has been logged"), status=500
    )
