"""Azure's wire shapes: error envelopes, time formats and headers, one place per service.

Every shape here is matched against ../shared/reference/azure-wire/ (see docs/sandbox.md).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from aiohttp import web

JSON_UTF8 = "application/json; charset=utf-8"


def json_response(
    body: Any,
    status: int = 200,
    *,
    content_type: str = JSON_UTF8,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        headers={"Content-Type": content_type, **(headers or {})},
    )


def graph_time(t: datetime) -> str:
    """Graph's ISO-8601 with seven fractional digits and ``Z``."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}0Z"


def parse_time(value: str) -> datetime:
    """Parse the ISO-8601 Graph accepts (``Z`` or an offset; up to 7 fractional digits)."""
    v = value.strip().replace("Z", "+00:00")
    if "." in v:
        head, _, rest = v.partition(".")
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]  # the fraction only
        tz = rest[len(digits) :]
        v = f"{head}.{digits[:6].ljust(6, '0')}{tz}"
    t = datetime.fromisoformat(v)
    if t.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone")
    return t


# -- Entra (AADSTS bodies) --------------------------------------------------------


def entra_error(status: int, error: str, code: int, message: str, now: datetime) -> web.Response:
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
    body = {
        "error": error,
        "error_description": (
            f"AADSTS{code}: {message} Trace ID: {trace_id} Correlation ID: {correlation_id} "
            f"Timestamp: {stamp}"
        ),
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    return json_response(
        body,
        status,
        headers={"Cache-Control": "no-store, no-cache", "x-ms-request-id": trace_id},
    )


# -- Graph (OData errors) ---------------------------------------------------------


def graph_error(
    status: int,
    code: str,
    message: str,
    now: datetime,
    *,
    details: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    request_id = str(uuid.uuid4())
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    error["innerError"] = {
        "date": now.strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": request_id,
        "client-request-id": request_id,
    }
    return json_response(
        {"error": error},
        status,
        content_type="application/json",
        headers={"request-id": request_id, "client-request-id": request_id, **(headers or {})},
    )


# -- Key Vault and ARM ------------------------------------------------------------


def keyvault_error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    return json_response(
        {"error": {"code": code, "message": message}},
        status,
        headers={
            "x-ms-request-id": str(uuid.uuid4()),
            "Cache-Control": "no-cache",
            **(headers or {}),
        },
    )


def arm_error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    request_id = str(uuid.uuid4())
    return json_response(
        {"error": {"code": code, "message": message}},
        status,
        headers={
            "x-ms-request-id": request_id,
            "x-ms-correlation-request-id": request_id,
            **(headers or {}),
        },
    )


def web_error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    """Microsoft.Web's own errors (the resource provider, not ARM's front door): PascalCase
    keys at the top level, ``Details`` repeating the message, code and an ErrorEntity."""
    request_id = str(uuid.uuid4())
    entity: dict[str, Any] = {"ExtendedCode": None, "MessageTemplate": None,
                               "Parameters": [], "Code": code, "Message": message}  # fmt: skip
    body: dict[str, Any] = {
        "Code": code,
        "Message": message,
        "Target": None,
        "Details": [{"Message": message}, {"Code": code}, {"ErrorEntity": entity}],
        "Innererror": None,
    }
    return json_response(
        body,
        status,
        headers={
            "x-ms-request-id": request_id,
            "x-ms-correlation-request-id": request_id,
            **(headers or {}),
        },
    )


# Default codes for injected statuses, per service (overridable per injection).
GRAPH_CODES = {
    400: "Request_BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Authorization_RequestDenied",
    404: "Request_ResourceNotFound",
    429: "TooManyRequests",
    500: "generalException",
    503: "serviceNotAvailable",
    504: "gatewayTimeout",
}
KEYVAULT_CODES = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "SecretNotFound",
    429: "Throttled",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}
ARM_CODES = {
    404: "ResourceNotFound",
    409: "Conflict",
    429: "SubscriptionRequestsThrottled",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}
ENTRA_CODES: dict[int, tuple[str, int]] = {
    400: ("invalid_request", 900144),
    401: ("invalid_client", 7000215),
    429: ("temporarily_unavailable", 50196),
    500: ("server_error", 90033),
    503: ("temporarily_unavailable", 90033),
}


def bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
