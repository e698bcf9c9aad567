"""What a probe saw: immutable values that metrics, the policy and verification read.

A probe never raises for a broken target: a failure is an observation with
``ok=False`` and an ``error`` that names the step and the cause. The same values are
what remediation verifies against, so "detected" and "fixed" mean the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tenant.models import KeyVaultReference, PasswordCredential, TokenFailure


@dataclass(frozen=True, slots=True)
class ExpiryObservation:
    """The app's credentials and which one the current Key Vault value belongs to."""

    ok: bool
    credentials: tuple[PasswordCredential, ...] = ()
    keyvault_version: str | None = None
    # The credential the Key Vault value belongs to (matched by the keyId tag or the
    # hint, confirmed by a token request); None when it matches no live credential.
    in_use: PasswordCredential | None = None
    keyvault_matches_credential: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True)
class HealthObservation:
    ok: bool
    status_code: int | None
    duration_seconds: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class GraphAuthObservation:
    """A token request with the Key Vault value, then the app's Graph call with it."""

    ok: bool
    token_ok: bool
    token_failure: TokenFailure | None = None
    aadsts: int | None = None
    graph_status: int | None = None  # None when no Graph call was made
    graph_code: str | None = None
    keyvault_version: str | None = None
    error: str | None = None

    @property
    def auth_failed(self) -> bool:
        """An authentication failure (as opposed to Azure being unreachable)."""
        if self.ok:
            return False
        if self.token_failure is not None:
            return self.token_failure not in (TokenFailure.THROTTLED, TokenFailure.UNAVAILABLE)
        return self.graph_status in (401, 403)

    @property
    def reason(self) -> str | None:
        """The metric label: ``aadsts_7000222``, ``invalid_client``, ``graph_401``..."""
        if self.ok:
            return None
        if self.aadsts is not None:
            return f"aadsts_{self.aadsts}"
        if self.token_failure is not None:
            return self.token_failure.value
        if self.graph_status is not None:
            return f"graph_{self.graph_status}"
        return "error"


@dataclass(frozen=True, slots=True)
class ReferenceObservation:
    """The App Service's Key Vault reference to the secret, and whether it is stale."""

    ok: bool
    reference: KeyVaultReference | None = None
    current_version: str | None = None  # the Key Vault's current version
    resolved: bool = False
    stale: bool = False  # the app holds an older version than the current one
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Observed:
    """A probe result stamped with when it was taken, for the policy."""

    target: str
    probe: str
    at: datetime
    value: ExpiryObservation | HealthObservation | GraphAuthObservation | ReferenceObservation
