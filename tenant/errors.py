"""Errors from Azure, classified so the layers above can act without reading text.

Every error names the service and the operation, carries Azure's own error code and
HTTP status, and says whether retrying can help. A secret value never appears in one:
messages are built from codes, statuses, names and Azure's own error messages only.
"""

from __future__ import annotations


class TenantError(Exception):
    """An Azure call failed.

    ``permanent`` is True when repeating the same call cannot succeed without a change
    (a policy violation, a missing permission, a missing resource); False for
    throttling, 5xx and connection trouble. ``retry_after`` is the server's
    Retry-After in seconds when it sent one.
    """

    default_permanent = False

    def __init__(
        self,
        service: str,
        operation: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        permanent: bool | None = None,
    ) -> None:
        self.service = service
        self.operation = operation
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.permanent = self.default_permanent if permanent is None else permanent
        self.detail = message
        what = " ".join(p for p in (f"HTTP {status}" if status else "", code or "") if p)
        head = f"{service} {operation} failed" + (f" ({what})" if what else "")
        super().__init__(f"{head}: {message}")


class NotFound(TenantError):
    """The app, the secret, the site or the credential does not exist."""

    default_permanent = True


class Throttled(TenantError):
    """HTTP 429 (or Key Vault's Throttled). ``retry_after`` says how long to wait."""


class Unavailable(TenantError):
    """5xx, a timeout or a connection failure: worth retrying later."""


class PermissionDenied(TenantError):
    """401/403: the daemon's own identity may not do this. Not fixed by retrying."""

    default_permanent = True


class PolicyViolation(TenantError):
    """An app management policy refused the request (e.g. the secret lifetime)."""

    default_permanent = True


class TooManySecrets(PolicyViolation):
    """The app already holds as many client secrets as it may."""


def by_status(
    service: str,
    operation: str,
    message: str,
    *,
    status: int | None,
    code: str | None,
    retry_after: float | None,
) -> TenantError | None:
    """The classification every Azure service shares: throttling, not found, denied,
    server trouble. None when the status alone does not decide (a 400, usually), so a
    service can apply its own codes before falling back to a permanent TenantError."""
    cls: type[TenantError]
    if status == 429 or code in ("Throttled", "TooManyRequests"):
        cls = Throttled
    elif status == 404:
        cls = NotFound
    elif status in (401, 403):
        cls = PermissionDenied
    elif status is not None and status >= 500:
        cls = Unavailable
    else:
        return None
    return cls(service, operation, message, status=status, code=code, retry_after=retry_after)
