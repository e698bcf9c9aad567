"""What the tenant layer hands back: immutable values in the runbook's words.

Nothing here holds an SDK object; the layers above never see Azure types.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

# The Key Vault tag naming the keyId of the app credential a version's value belongs
# to: written by the rotation, read by the expiry probe to match without a token test.
KEY_ID_TAG = "secretwarden-key-id"


class SecretValue:
    """A client secret value that cannot leak by accident.

    ``str()``, ``repr()`` and formatting all print ``**********``; only
    :meth:`reveal` returns the value, and only the tenant layer calls it, at the
    moment it hands the value to an SDK. Equality compares values in constant time
    so a caller can ask "is this the same secret" without revealing either.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise ValueError("a secret value cannot be empty")
        self._value = value

    def reveal(self) -> str:
        return self._value

    @property
    def hint(self) -> str:
        """The first three characters, as Graph reports them in ``hint``."""
        return self._value[:3]

    def __repr__(self) -> str:
        return "SecretValue('**********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        import hmac

        if not isinstance(other, SecretValue):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("SecretValue", len(self._value)))

    def __reduce__(self) -> str | tuple[object, ...]:  # pickling would write it somewhere
        raise TypeError("SecretValue cannot be pickled")


@dataclass(frozen=True, slots=True)
class PasswordCredential:
    """One client secret of the app registration, as Graph lists it (no value)."""

    key_id: str
    display_name: str | None
    hint: str | None
    start: datetime | None
    end: datetime | None

    def expired(self, now: datetime) -> bool:
        return self.end is not None and self.end <= now


@dataclass(frozen=True, slots=True)
class AppRegistration:
    object_id: str
    client_id: str
    display_name: str | None
    credentials: tuple[PasswordCredential, ...]


@dataclass(frozen=True, slots=True)
class NewPassword:
    """The answer to addPassword: the only time Graph shows the value."""

    credential: PasswordCredential
    value: SecretValue


@dataclass(frozen=True, slots=True)
class SecretVersion:
    """One version of the Key Vault secret (``value`` is None in version listings)."""

    name: str
    version: str
    value: SecretValue | None
    enabled: bool
    created: datetime | None
    updated: datetime | None
    expires: datetime | None
    not_before: datetime | None
    content_type: str | None
    tags: dict[str, str] = field(default_factory=dict)


class TokenFailure(enum.Enum):
    """Why Entra refused a client-credentials request, in the runbook's terms."""

    INVALID_SECRET = "invalid_secret"  # AADSTS7000215: no credential has this value
    EXPIRED_SECRET = "expired_secret"  # AADSTS7000222: the credential has expired
    APP_NOT_FOUND = "app_not_found"  # AADSTS700016
    TENANT_NOT_FOUND = "tenant_not_found"  # AADSTS90002
    INVALID_CLIENT = "invalid_client"  # another invalid_client / unauthorized_client
    THROTTLED = "throttled"  # 429
    UNAVAILABLE = "unavailable"  # 5xx, timeouts, connection errors
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class TokenOutcome:
    """The result of trying a secret at the token endpoint.

    ``ok`` is True when Entra issued a token. On failure, ``failure`` classifies it,
    ``aadsts`` is the AADSTS code when Entra gave one, ``status`` the HTTP status when
    known. ``access_token`` is only set on success and is a secret too.
    """

    ok: bool
    failure: TokenFailure | None = None
    aadsts: int | None = None
    status: int | None = None
    error: str | None = None  # the token endpoint's ``error`` field, e.g. invalid_client
    access_token: SecretValue | None = None
    expires_on: int | None = None

    @property
    def secret_rejected(self) -> bool:
        """True when Entra says this secret itself is wrong or expired."""
        return self.failure in (TokenFailure.INVALID_SECRET, TokenFailure.EXPIRED_SECRET)


@dataclass(frozen=True, slots=True)
class GraphCallOutcome:
    """The result of the Graph call the app makes with its own token."""

    status: int
    code: str | None  # Graph's error.code on failure, e.g. InvalidAuthenticationToken
    duration_seconds: float


class SiteState(enum.Enum):
    RUNNING = "Running"
    STOPPED = "Stopped"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    state: SiteState
    default_host_name: str | None


@dataclass(frozen=True, slots=True)
class KeyVaultReference:
    """One app setting's Key Vault reference, as ARM's configreferences report it.

    ``status`` is ARM's string (``Resolved``, ``SecretNotFound``,
    ``AccessToKeyVaultDenied``, ...). ``secret_version`` is what the reference names
    (None for a versionless reference, which follows the current version);
    ``active_version`` is the version the app actually resolved and holds.
    """

    key: str
    status: str
    vault_name: str | None
    secret_name: str | None
    secret_version: str | None
    active_version: str | None
    details: str | None

    @property
    def resolved(self) -> bool:
        return self.status == "Resolved"
