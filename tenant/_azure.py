"""What every azure-core client here is built with, and how its errors become ours.

One place decides the transport settings (the CA, timeouts, retries) so that the
credential, Key Vault and ARM clients all behave the same under a given
:class:`~tenant.endpoints.RetryPolicy`.
"""

from __future__ import annotations

import json
from typing import Any

from azure.core.exceptions import (
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from tenant.endpoints import Cloud, RetryPolicy
from tenant.errors import TenantError, Unavailable, by_status


def client_kwargs(cloud: Cloud, retry: RetryPolicy) -> dict[str, Any]:
    """Keyword arguments for any azure-core client or azure-identity credential."""
    kwargs: dict[str, Any] = {
        "retry_total": retry.total,
        "retry_backoff_factor": retry.backoff_factor,
        "retry_backoff_max": retry.backoff_max,
        "connection_timeout": retry.timeout_seconds,
        "read_timeout": retry.timeout_seconds,
    }
    if cloud.ca_file is not None:
        kwargs["connection_verify"] = str(cloud.ca_file)
    return kwargs


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds; None when absent or an HTTP date we do not parse."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(seconds, 0.0)


def _error_body(error: HttpResponseError) -> tuple[str | None, str | None]:
    """(code, message) from an ARM/Key Vault ``{"error": {"code", "message"}}`` body, or
    Microsoft.Web's ``{"Code", "Message", ...}``."""
    code: str | None = None
    message: str | None = None
    if error.error is not None:
        code = error.error.code
        message = error.error.message
    if code is None and error.response is not None:
        try:
            body = json.loads(error.response.text())
        except (ValueError, TypeError):
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            code = body["error"].get("code")
            message = body["error"].get("message")
        elif isinstance(body, dict) and isinstance(body.get("Code"), str):
            # Microsoft.Web's own errors: PascalCase at the top level (Code, Message, ...)
            code = body["Code"]
            message = body.get("Message") if isinstance(body.get("Message"), str) else None
    return code, message


def credential_kwargs(cloud: Cloud, retry: RetryPolicy) -> dict[str, Any]:
    """Keyword arguments for an azure-identity credential: the client's, plus the
    authority and (for custom clouds) no instance discovery."""
    kwargs = client_kwargs(cloud, retry)
    kwargs["authority"] = cloud.authority
    if cloud.disable_instance_discovery:
        kwargs["disable_instance_discovery"] = True
    return kwargs


def map_http_error(error: Exception, service: str, operation: str) -> TenantError:
    """Classify an azure-core exception. Azure's own code and message are kept; the
    request and its body are not (a PUT body may carry a secret)."""
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return Unavailable(service, operation, f"connection failed: {type(error).__name__}")
    if not isinstance(error, HttpResponseError):
        return Unavailable(service, operation, f"unexpected error: {type(error).__name__}")
    status = error.status_code
    code, message = _error_body(error)
    detail = message or (error.reason or "no error message")
    # Both the legacy and the rest response types carry headers; the stubs name one.
    headers = getattr(error.response, "headers", None) or {}
    retry_after = retry_after_seconds(headers.get("Retry-After"))
    if isinstance(error, ResourceNotFoundError):
        status = status or 404
    known = by_status(service, operation, detail, status=status, code=code, retry_after=retry_after)
    if known is not None:
        return known
    return TenantError(service, operation, detail, status=status, code=code, permanent=True)
