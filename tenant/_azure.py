"""What every azure-core client here is built with, and how its errors become ours.

One place decides the transport settings (the CA, timeouts, retries) so that the
credential, Key Vault and ARM clients all behave the same under a given
:class:`~tenant.endpoints.RetryPolicy`.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from tenant.advice import aadsts_fix
from tenant.endpoints import Cloud, RetryPolicy
from tenant.errors import PermissionDenied, SignInRefused, TenantError, Unavailable, classify


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


def parse_graph_time(value: object) -> datetime | None:
    """Graph's ISO-8601 (``Z`` or an offset, up to 7 fractional digits: Python 3.11's
    ``fromisoformat`` reads them all), or None. A time without a zone is UTC."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _field(body: dict[str, Any], name: str) -> Any:
    """``body[name]`` matched without regard to case (ARM says ``code``, Microsoft.Web
    ``Code``, Key Vault ``innererror`` and its SDKs ``innerError``)."""
    for key, value in body.items():
        if isinstance(key, str) and key.lower() == name.lower():
            return value
    return None


def error_fields(text: str | None) -> tuple[str | None, str | None, str | None]:
    """(code, message, inner code) of an Azure error body, whichever shape it has:
    ARM's and Key Vault's ``{"error": {"code", "message", "innererror": {"code"}}}``
    or Microsoft.Web's own PascalCase ``{"Code", "Message", "Details", "Innererror"}``.
    All None when the body is not JSON or names none of them."""
    try:
        body = json.loads(text) if text else None
    except (ValueError, TypeError):
        return None, None, None
    if not isinstance(body, dict):
        return None, None, None
    inner = _field(body, "error")
    if isinstance(inner, dict):
        body = inner
    code = _field(body, "code")
    message = _field(body, "message")
    nested = _field(body, "innererror")
    inner_code = _field(nested, "code") if isinstance(nested, dict) else None
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
        inner_code if isinstance(inner_code, str) else None,
    )


def _error_body(error: HttpResponseError) -> tuple[str | None, str | None, str | None]:
    try:
        text = error.response.text() if error.response is not None else None
    except Exception:  # a streamed or undecodable body: no fields to read
        text = None
    return error_fields(text)


# Keyword arguments that switch azure-core's retry off for one request (a write or a
# transition: see tenant.errors for who retries what).
SINGLE_SHOT: dict[str, Any] = {"retry_total": 0}


def credential_kwargs(cloud: Cloud, retry: RetryPolicy) -> dict[str, Any]:
    """Keyword arguments for an azure-identity credential: the client's, plus the
    authority and (for custom clouds) no instance discovery."""
    kwargs = client_kwargs(cloud, retry)
    kwargs["authority"] = cloud.authority
    if cloud.disable_instance_discovery:
        kwargs["disable_instance_discovery"] = True
    return kwargs


_AADSTS_TEXT = re.compile(r"AADSTS(\d+):\s*(.*?)(?:\s+Trace ID:|'?\nContent:|'?$)", re.DOTALL)
# azure-identity refuses, before any request, a token for a tenant the credential was
# not built for: a resource (the vault's challenge) in another tenant than tenant_id.
_OTHER_TENANT = re.compile(r"not configured to acquire tokens for tenant (\S+?)\.?(?:\s|$)")
_NO_IDENTITY = (
    "no identity found: on an Azure VM give it a managed identity (docs/deploy-systemd.md), "
    "or set identity.kind to client_secret or certificate"
)


def sign_in_error(error: Exception, service: str, operation: str) -> TenantError | None:
    """The operator's own sign-in failed (azure-identity raised before ``service`` was
    asked): Entra's AADSTS code and message, and what to fix. None when ``error`` is
    a refusal by the service itself (a 401 or 403 with the service's own body)."""
    if not isinstance(error, ClientAuthenticationError):
        return None
    text = str(error)
    try:
        body = json.loads(error.response.text()) if error.response is not None else None
    except Exception:  # not JSON, or a body that cannot be read: the text says it too
        body = None
    described = body.get("error_description") if isinstance(body, dict) else None
    match = _AADSTS_TEXT.search(described if isinstance(described, str) else text)
    status = error.status_code
    if match is not None and (status == 429 or (status is not None and status >= 500)):
        # Entra throttled or failed: transient, classified by status like any service's.
        number = int(match.group(1))
        return classify(
            service,
            f"{operation} (operator sign-in)",
            match.group(2).strip(),
            status=status,
            code=f"AADSTS{number}",
        )
    if match is not None:
        number = int(match.group(1))
        return SignInRefused(
            service,
            operation,
            f"the operator's sign-in was refused: {match.group(2).strip()}",
            status=error.status_code,
            code=f"AADSTS{number}",
            fix=aadsts_fix(number),
        )
    if error.response is not None:
        return None  # the service's own 401: its body says why (classified below)
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    other = _OTHER_TENANT.search(text)
    fix = (
        f"the {service} resource belongs to tenant {other.group(1)}, the operator signs in "
        "to another: set tenant_id to the resource's tenant"
        if other
        else _NO_IDENTITY
        if type(error).__name__ == "CredentialUnavailableError"
        else None
    )
    return PermissionDenied(service, operation, f"the operator could not sign in: {first}", fix=fix)


def map_http_error(
    error: Exception, service: str, operation: str, *, write: bool = False
) -> TenantError:
    """Classify an azure-core exception with :func:`tenant.errors.classify`. Azure's
    own code and message are kept; the request and its body are not (a PUT body may
    carry a secret). ``write``: the request may have taken effect if the failure is
    transient (``maybe_applied``)."""
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        # A request that never reached the server (ServiceRequestError) took no effect;
        # one whose reply was lost (ServiceResponseError) may have.
        return Unavailable(
            service,
            operation,
            f"connection failed: {type(error).__name__}",
            maybe_applied=write and isinstance(error, ServiceResponseError),
        )
    if (signin := sign_in_error(error, service, operation)) is not None:
        return signin
    if not isinstance(error, HttpResponseError):
        return Unavailable(
            service, operation, f"unexpected error: {type(error).__name__}", maybe_applied=write
        )
    status = error.status_code
    code, message, inner_code = _error_body(error)
    detail = message or (error.reason or "no error message")
    # Both the legacy and the rest response types carry headers; the stubs name one.
    headers = getattr(error.response, "headers", None) or {}
    retry_after = retry_after_seconds(headers.get("Retry-After"))
    if isinstance(error, ResourceNotFoundError):
        status = status or 404
    return classify(
        service,
        operation,
        detail,
        status=status,
        code=code,
        inner_code=inner_code,
        retry_after=retry_after,
        maybe_applied=write,
    )
