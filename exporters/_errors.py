"""How a probe turns an exception into the ``error`` text of its observation."""

from __future__ import annotations

from tenant.errors import TenantError


def describe(step: str, exc: BaseException) -> str:
    """``<step>: <cause>``. TenantError messages never hold a secret value; for any
    other exception only its type is named, since its text is not under our control."""
    if isinstance(exc, TenantError):
        return f"{step}: {exc}"
    if isinstance(exc, TimeoutError):
        return f"{step}: timed out"
    return f"{step}: unexpected {type(exc).__name__}"
